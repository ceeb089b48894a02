"""posts.teaser and posts.page_words: a teaser-only post's reading time from its page

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(
            sa.Column("teaser", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("page_words", sa.Integer(), nullable=True))
        batch.create_index("ix_posts_pages", ["teaser", "page_words"])


def downgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.drop_index("ix_posts_pages")
        batch.drop_column("page_words")
        batch.drop_column("teaser")
