"""Counts kept as the work happens: an issue's deliveries, bounces and complaints, the posts
stored; filled from the rows already there. An index on issues.status (what /metrics counts
by; subscribers by status use 0010's ix_subscribers_status_created).

/metrics counted and grouped the whole delivery log at each scrape (1,362 ms at 2.6 million
rows); these rows are what it reads now, and what is left of an issue's delivery log once
delivery.keep_log folds it away.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The counts of every issue from its delivery rows and bounce events, as the code keeps them
# (bounces and complaints: distinct subscribers; refusals while sending are the failed rows).
FILL_ISSUE_COUNTS = """
INSERT INTO issue_counts
    (issue_id, pending, sending, sent, failed, skipped, hard, soft, complaints, last_sent_at)
SELECT i.id, COALESCE(d.pending, 0), COALESCE(d.sending, 0), COALESCE(d.sent, 0),
       COALESCE(d.failed, 0), COALESCE(d.skipped, 0), 0, 0, 0, d.last_sent_at
FROM issues i LEFT JOIN (
    SELECT issue_id,
           SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending,
           SUM(CASE WHEN status = 'sending' THEN 1 ELSE 0 END) AS sending,
           SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS sent,
           SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
           SUM(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS skipped,
           MAX(sent_at) AS last_sent_at
    FROM deliveries GROUP BY issue_id
) d ON d.issue_id = i.id
"""
FILL_EVENTS = """
UPDATE issue_counts SET {column} = (
    SELECT COUNT(DISTINCT e.subscriber_id) FROM bounce_events e
    WHERE e.issue_id = issue_counts.issue_id AND e.kind = '{kind}' AND e.source != 'smtp'
)
"""
# (none when there are none: a new database holds nothing, as `digest migrate --to` wants)
FILL_COUNTS = "INSERT INTO counts (name, n) SELECT 'posts', COUNT(*) FROM posts HAVING COUNT(*) > 0"


def upgrade() -> None:
    op.create_table(
        "issue_counts",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("sending", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("hard", sa.Integer(), nullable=False),
        sa.Column("soft", sa.Integer(), nullable=False),
        sa.Column("complaints", sa.Integer(), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("issue_id"),
    )
    op.create_table(
        "counts",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_issues_status", "issues", ["status"])
    op.execute(FILL_ISSUE_COUNTS)
    for column, kind in (("hard", "hard"), ("soft", "soft"), ("complaints", "complaint")):
        op.execute(FILL_EVENTS.format(column=column, kind=kind))
    op.execute(FILL_COUNTS)


def downgrade() -> None:
    op.drop_index("ix_issues_status", table_name="issues")
    op.drop_table("counts")
    op.drop_table("issue_counts")
