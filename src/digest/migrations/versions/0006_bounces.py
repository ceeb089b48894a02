"""bounce_events: bounces and complaints heard back from inboxes and sending services

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "issue_id", sa.Integer(), sa.ForeignKey("issues.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("status_code", sa.String(32), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.UniqueConstraint("source_id", "subscriber_id", name="uq_bounce_events_source"),
    )
    op.create_index("ix_bounce_events_subscriber", "bounce_events", ["subscriber_id", "at"])
    op.create_index("ix_bounce_events_issue", "bounce_events", ["issue_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_bounce_events_issue", "bounce_events")
    op.drop_index("ix_bounce_events_subscriber", "bounce_events")
    op.drop_table("bounce_events")
