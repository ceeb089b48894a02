"""The bounce events kept: listed for `digest bounces list` and `subscribers show`, and summed
into each issue's bounce and complaint rates (`digest status`, /metrics)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.bounces.policy import IssueRates
from digest.delivery import counts
from digest.models import BounceEvent, Issue, Subscriber
from digest.storage import Database
from digest.types import BounceKind, DeliveryStatus
from digest.words import show_time


@dataclass(frozen=True)
class EventInfo:
    """One stored event as the commands show it."""

    at: datetime
    email: str
    issue: int | None  # the issue's number
    kind: BounceKind
    source: str
    status_code: str | None
    diagnostic: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "email": self.email,
            "issue": self.issue,
            "kind": self.kind,
            "source": self.source,
            "status_code": self.status_code,
            "diagnostic": self.diagnostic,
        }

    def line(self, zone: str = "UTC") -> str:
        """The event for people: its time in ``zone``, labelled."""
        issue = f"#{self.issue}" if self.issue is not None else "-"
        code = self.status_code or ""
        return (
            f"{show_time(self.at, zone)}  {self.email}  {self.kind:9}  {issue:5}  "
            f"{self.source:8}  {code:8}  {self.diagnostic[:100]}"
        ).rstrip()


def list_events(db: Database, *, email: str | None = None, limit: int = 100) -> list[EventInfo]:
    """The newest events first, everyone's or one address's."""
    query = (
        select(BounceEvent, Subscriber.email, Issue.number)
        .join(Subscriber, Subscriber.id == BounceEvent.subscriber_id)
        .outerjoin(Issue, Issue.id == BounceEvent.issue_id)
        .order_by(BounceEvent.at.desc(), BounceEvent.id.desc())
        .limit(limit)
    )
    if email is not None:
        query = query.where(Subscriber.email == email)
    with db.session() as s:
        return [
            EventInfo(e.at, address, number, e.kind, e.source, e.status_code, e.diagnostic)
            for e, address, number in s.execute(query)
        ]


def issue_rates(
    db: Database, *, last: int | None = None, issue_id: int | None = None
) -> list[IssueRates]:
    """Each issue's deliveries, bounces and complaints, newest first (``last``: only those;
    ``issue_id``: only that one), from the counts kept as they happen (delivery.counts): two
    small queries whatever the size of the delivery log."""
    with db.session() as s:
        return rates_in(s, last=last, issue_id=issue_id)


def rates_in(
    s: Session, *, last: int | None = None, issue_id: int | None = None
) -> list[IssueRates]:
    """issue_rates in the caller's session."""
    issues = select(Issue.id).order_by(Issue.number.desc())
    if issue_id is not None:
        issues = issues.where(Issue.id == issue_id)
    if last is not None:
        issues = issues.limit(last)
    found = counts.tallies(s, s.scalars(issues).all())
    return [
        IssueRates(
            number=t.number,
            sent=t.count(DeliveryStatus.SENT),
            failed=t.count(DeliveryStatus.FAILED),
            hard=t.hard,
            soft=t.soft,
            complaints=t.complaints,
        )
        for t in sorted(found.values(), key=lambda t: -t.number)
    ]


def rates_of(db: Database, issue_id: int) -> IssueRates | None:
    found = issue_rates(db, issue_id=issue_id)
    return found[0] if found else None
