"""An index on a post's date as the issue window judges it, coalesce(date, first_seen): the
links between the list's blogs that score an issue's picks are read from the posts of two
windows, which scanned every post ever stored at each preview and send; the week's candidates
are found by it too. And issues by the end of their window (a plan's lookups).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_posts_posted", "posts", [sa.text("coalesce(date, first_seen)")])
    op.create_index("ix_issues_window_end", "issues", ["window_end"])


def downgrade() -> None:
    op.drop_index("ix_issues_window_end", table_name="issues")
    op.drop_index("ix_posts_posted", table_name="posts")
