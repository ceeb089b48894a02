"""An index on each blog's posts by their date as the issue window judges it: the signals that
score an issue's picks (how many posts a blog had in the last half year, its latest before the
week) read every post the week's blogs ever had, at each preview and send.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_posts_feed_posted", "posts", ["feed_id", sa.text("coalesce(date, first_seen)")]
    )


def downgrade() -> None:
    op.drop_index("ix_posts_feed_posted", table_name="posts")
