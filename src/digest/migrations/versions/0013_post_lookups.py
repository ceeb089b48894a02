"""Each blog's posts found by what asks for them, not read whole:

- by their date as the issue window judges it (feed_id, coalesce(date, first_seen)): the
  signals that score an issue's picks (how many posts a blog had in the last half year, its
  latest before the week) read every post the week's blogs ever had, at each preview and send;
- by canonical link (feed_id, canonical_url), replacing (feed_id, link), which no query used: a
  poll that brings a changed feed looks up its entries' stored posts by key and, for a GUID
  that changed, by canonical link, where it read every post the feed ever had.

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
    op.create_index("ix_posts_feed_canonical", "posts", ["feed_id", "canonical_url"])
    op.drop_index("ix_posts_feed_link", table_name="posts")


def downgrade() -> None:
    op.create_index("ix_posts_feed_link", "posts", ["feed_id", "link"])
    op.drop_index("ix_posts_feed_canonical", table_name="posts")
    op.drop_index("ix_posts_feed_posted", table_name="posts")
