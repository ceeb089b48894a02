"""The week's picks and feed rules: posts' categories and links, feeds' rules, curations

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("categories", sa.Text(), nullable=True))
        batch.add_column(sa.Column("links", sa.Text(), nullable=True))
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("rule_skip", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rule_section", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("rule_section_if", sa.Text(), nullable=True))
    op.create_table(
        "curations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_curations_issue_url", "curations", ["issue_id", "url"])


def downgrade() -> None:
    op.drop_index("ix_curations_issue_url", table_name="curations")
    op.drop_table("curations")
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("rule_section_if")
        batch.drop_column("rule_section")
        batch.drop_column("rule_skip")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("links")
        batch.drop_column("categories")
