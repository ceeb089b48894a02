"""Indexes for every lookup the code makes (issue 22): the delivery log by subscriber (the
cascade of every subscriber deleted, forget, a bounce's latest issue), by Message-ID (a
webhook's report), by issue and status (send, status, counts); fetches by time (their prune);
subscribers by status and sign-up time (the prune of stale sign-ups)

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_deliveries_subscriber_sent", "deliveries", ["subscriber_id", "sent_at"]),
    ("ix_deliveries_message_id", "deliveries", ["message_id"]),
    ("ix_deliveries_issue_status", "deliveries", ["issue_id", "status"]),
    ("ix_fetches_at", "fetches", ["at"]),
    ("ix_subscribers_status_created", "subscribers", ["status", "created_at"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
