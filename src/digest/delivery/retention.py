"""Retention of the delivery log: a row per message makes a send exactly-once and links a late
bounce to its issue by Message-ID; once delivery.keep_log has passed since an issue was
made (and every one of its deliveries is done), its rows are deleted and its counts
(delivery.counts, kept as it went out) are all that is left of it: folded.

Deleted in small batches, each its own short transaction, so a poll, a send or a sign-up
waiting for SQLite's write lock waits for one batch, never for the whole log. A run that
stops part-way leaves the issue unfolded; the next one finishes it. Kept forever: the issues
themselves (the archive), subscribers' consent events and forgotten addresses' hashes
(README, "What is kept").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from digest.delivery.counts import ZERO
from digest.models import ISSUE_COUNTS, Delivery, Issue, IssueCounts
from digest.storage import Database
from digest.types import IssueStatus
from digest.words import counted

# Rows deleted per transaction, the longest the write lock is held for it: folding 235 issues
# (2.35 M rows) of bench/scrape.py's five-year SQLite database took 1,646 transactions of 21 ms
# (median; the longest 265 ms), 45 s in all.
BATCH = 2000


@dataclass
class Folded:
    """What a fold did: the issues folded (their numbers) and the rows deleted."""

    issues: list[int] = field(default_factory=list)
    rows: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"issues_folded": self.issues, "delivery_rows_deleted": self.rows}

    def line(self) -> str:
        if not self.issues and not self.rows:
            return "delivery log: nothing older than delivery.keep_log"
        numbers = ", ".join(f"#{n}" for n in self.issues) or "none yet"
        return (
            f"delivery log: {counted(self.rows, 'row')} older than delivery.keep_log deleted; "
            f"issues folded into their counts: {numbers}"
        )


def fold_old_logs(
    db: Database,
    now: datetime,
    keep: timedelta,
    *,
    batch: int = BATCH,
    stop: Callable[[], bool] = lambda: False,
) -> Folded:
    """Fold every sent issue made more than ``keep`` before ``now``, oldest first; ``stop``
    is asked between batches (a daemon shutting down)."""
    folded = Folded()
    for issue_id, number in due_issues(db, now - keep):
        deleted, done = _delete_rows(db, issue_id, batch, stop)
        folded.rows += deleted
        if not done:
            break
        _mark_folded(db, issue_id, now)
        folded.issues.append(number)
    return folded


def due_issues(db: Database, before: datetime) -> list[tuple[int, int]]:
    """(id, number) of the sent issues made before ``before`` whose log is still there."""
    with db.session() as s:
        rows = s.execute(
            select(Issue.id, Issue.number)
            .outerjoin(IssueCounts, IssueCounts.issue_id == Issue.id)
            .where(
                Issue.status == IssueStatus.SENT,
                Issue.created_at < before,
                IssueCounts.folded_at.is_(None),
            )
            .order_by(Issue.number)
        ).all()
    return [(issue_id, number) for issue_id, number in rows]


def _delete_rows(
    db: Database, issue_id: int, batch: int, stop: Callable[[], bool]
) -> tuple[int, bool]:
    """Delete the issue's rows, ``batch`` a transaction: (rows deleted, whether all are)."""
    deleted = 0
    while not stop():
        with db.session() as s:
            ids = select(Delivery.id).where(Delivery.issue_id == issue_id).limit(batch)
            gone = s.execute(delete(Delivery).where(Delivery.id.in_(ids.scalar_subquery())))
            n = int(getattr(gone, "rowcount", 0) or 0)
        deleted += n
        if n < batch:
            return deleted, True
    return deleted, False


def _mark_folded(db: Database, issue_id: int, now: datetime) -> None:
    with db.session() as s:
        query = update(ISSUE_COUNTS).where(ISSUE_COUNTS.c.issue_id == issue_id)
        if not s.execute(query.values(folded_at=now)).rowcount:  # type: ignore[attr-defined]
            s.execute(insert(ISSUE_COUNTS), {**ZERO, "issue_id": issue_id, "folded_at": now})
