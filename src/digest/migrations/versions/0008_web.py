"""the archive's content: each issue's picks' titles

Revision ID: 0008
Revises: 0007

The archive lists each issue with its picks' titles. Issues recorded before this revision get
them from their stored text part's "In this issue: ... Picks: A; B" line (the picks are
scored when an issue is recorded, and that line is what each issue said of them).
"""

import json
import re

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_PICKS = re.compile(r"\bPicks: (.+)")


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("pick_titles", sa.Text(), nullable=True))
    issues = sa.table(
        "issues", sa.column("id", sa.Integer), sa.column("text", sa.Text),
        sa.column("pick_titles", sa.Text),
    )  # fmt: skip
    conn = op.get_bind()
    for issue_id, text in conn.execute(sa.select(issues.c.id, issues.c.text)).all():
        titles = picks_said(text or "")
        conn.execute(
            issues.update().where(issues.c.id == issue_id).values(pick_titles=json.dumps(titles))
        )


def picks_said(text: str) -> list[str]:
    """The picks' titles an issue's text part names in its header paragraph (wrapped lines
    up to the first blank one)."""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    match = _PICKS.search(paragraph)
    return [t.strip() for t in match.group(1).split("; ") if t.strip()] if match else []


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("pick_titles")
