"""The curator's words kept with the issue: its intro, and a note per pick

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("intro", sa.Text(), nullable=True))
    with op.batch_alter_table("curations") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("curations") as batch:
        batch.drop_column("note")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("intro")
