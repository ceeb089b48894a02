"""Applying a report: find whom it is about, store the event, change the subscriber's status.

Whom, in order of trust: a VERP tag in the address the report came back to (checked with the
newsletter's key: a forged or altered tag drops the whole report), the Message-ID of our
message (the delivery log knows whom it went to; make_msgid's are not guessable), else the
failed addresses it names. The addresses count only where nothing better can be had: from an
authenticated webhook, or from the mailbox when VERP is off. With VERP on, every bounce of ours
comes back tagged, and a report that names a subscriber with neither tag nor Message-ID is
anybody's mail to the bounce address: believing it would let anyone unsubscribe anyone. Each
event is stored once per report and subscriber (``source_id``), so reading a report twice, or a
webhook sent again, changes nothing more.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.bounces import policy
from digest.bounces.events import rates_of
from digest.columns import fit
from digest.config import Settings
from digest.delivery import counts
from digest.delivery.deliverylog import SMTP_SOURCE
from digest.delivery.verp import check_tag, could_be_ours, read_tag
from digest.models import BounceEvent, Delivery, Subscriber
from digest.storage import Database, utcnow
from digest.types import BounceKind, BounceReport, DeliveryStatus, SubscriberStatus

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What applying one report did."""

    forged: bool = False  # a VERP tag that does not check out: nothing done
    matched: list[str] = field(default_factory=list)  # the subscribers it was about
    stored: int = 0  # new events (0 when the report was seen before)
    bounced: list[str] = field(default_factory=list)
    complained: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Match:
    subscriber_id: int
    email: str
    issue_id: int | None


def source_id(source: str, identity: str) -> str:
    """The stored identity of a report: its source and its own id (or its bytes' hash)."""
    return hashlib.sha256(f"{source}\0{identity}".encode()).hexdigest()


def apply_report(
    db: Database,
    settings: Settings,
    key: str,
    report: BounceReport,
    *,
    source: str,
    identity: str,
    authenticated: bool = False,
    now: datetime | None = None,
) -> Outcome:
    """Store a bounce or complaint and act on it (a report without a kind does nothing).

    ``authenticated``: the sender of the report is known (a webhook that checked the service's
    signature or secret), so the addresses it names can be believed."""
    outcome = Outcome()
    if report.kind is None:
        return outcome
    matches = _tagged(db, settings, key, report)
    if matches is None:
        outcome.forged = True
        log.warning(
            "bounces: a report with a forged VERP tag (%s) ignored", ", ".join(report.addressed_to)
        )
        return outcome
    matches = matches or _by_message_id(db, report)
    if not matches and (authenticated or not _tags_expected(settings)):
        matches = _by_address(db, report)
    elif not matches and report.recipients:
        log.warning(
            "bounces: a report about %s with neither a VERP tag nor one of our Message-IDs "
            "ignored (with VERP on, every bounce of ours comes back tagged)",
            ", ".join(report.recipients),
        )
    now = now or utcnow()
    for match in matches:
        outcome.matched.append(match.email)
        _apply_one(db, settings, report, match, (source, source_id(source, identity)), now, outcome)
    return outcome


def _apply_one(
    db: Database,
    settings: Settings,
    report: BounceReport,
    match: _Match,
    origin: tuple[str, str],
    now: datetime,
    outcome: Outcome,
) -> None:
    assert report.kind is not None
    source, event_id = origin
    issue_id = match.issue_id or _guessed_issue(db, match.subscriber_id, report, now)
    before = rates_of(db, issue_id) if issue_id is not None else None
    with db.session() as s:
        # The subscriber's row locked first: two reports about one reader at once (a webhook's
        # and the mailbox's) take turns, and the second sees the first's event, so the issue
        # counts the reader once. (SQLite's writers take turns already: BEGIN IMMEDIATE.)
        subscriber = s.get(Subscriber, match.subscriber_id, with_for_update=True)
        assert subscriber is not None
        seen = select(BounceEvent.id).where(
            BounceEvent.source_id == event_id, BounceEvent.subscriber_id == match.subscriber_id
        )
        if s.scalar(seen) is not None:
            return
        first = issue_id is not None and _first_of_kind(s, issue_id, match.subscriber_id, report)
        s.add(
            BounceEvent(
                at=report.at or now,
                subscriber_id=match.subscriber_id,
                issue_id=issue_id,
                kind=report.kind,
                source=source,
                source_id=event_id,
                status_code=fit(report.note, 32),
                diagnostic=report.diagnostic,
            )
        )
        s.flush()
        outcome.stored += 1
        if first and issue_id is not None and source != SMTP_SOURCE:
            counts.add(s, issue_id, {counts.KIND_COLUMNS[report.kind]: 1})
        soft = _soft_in_window(s, match.subscriber_id, now - settings.bounces.soft_window)
        status = policy.new_status(
            report.kind, subscriber.status, soft, settings.bounces.soft_limit
        )
        if status is not None:
            subscriber.status = status
            if status == SubscriberStatus.COMPLAINED:
                subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
                outcome.complained.append(subscriber.email)
            else:
                outcome.bounced.append(subscriber.email)
    after = rates_of(db, issue_id) if issue_id is not None else None
    if before is not None and after is not None:
        for line in policy.warnings(before, after):
            log.warning("%s", line, extra={"fields": {"event": "rate", "issue": after.number}})


def _first_of_kind(s: Session, issue_id: int, subscriber_id: int, report: BounceReport) -> bool:
    """Whether this is the subscriber's first event of this kind about the issue: the issue's
    counts are of subscribers (each counts once, however many reports)."""
    earlier = select(BounceEvent.id).where(
        BounceEvent.issue_id == issue_id,
        BounceEvent.subscriber_id == subscriber_id,
        BounceEvent.kind == report.kind,
        BounceEvent.source != SMTP_SOURCE,
    )
    return s.scalar(earlier.limit(1)) is None


def _soft_in_window(s: Session, subscriber_id: int, since: datetime) -> int:
    query = select(func.count()).where(
        BounceEvent.subscriber_id == subscriber_id,
        BounceEvent.kind == BounceKind.SOFT,
        BounceEvent.at >= since,
    )
    return int(s.scalar(query) or 0)


def _tagged(
    db: Database, settings: Settings, key: str, report: BounceReport
) -> list[_Match] | None:
    """The subscriber a VERP tag names ([] when there is no tag; None when it is forged)."""
    bounce = settings.newsletter.bounce_address
    tags = [t for a in report.addressed_to if bounce and (t := read_tag(bounce, a)) is not None]
    if not tags:
        return []
    tag = tags[0]
    if not could_be_ours(tag):
        return None
    with db.session() as s:
        row = s.get(Subscriber, tag.subscriber_id)
        if row is None or not check_tag(key, tag, row.email):
            return None
        return [_Match(row.id, row.email, tag.issue_id)]


def _tags_expected(settings: Settings) -> bool:
    return bool(settings.newsletter.bounce_address and settings.newsletter.verp)


def _by_message_id(db: Database, report: BounceReport) -> list[_Match]:
    if not report.message_id:
        return []
    with db.session() as s:
        rows = s.execute(
            select(Delivery.subscriber_id, Subscriber.email, Delivery.issue_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.message_id == report.message_id)
        ).all()
    return [_Match(*row) for row in rows]


def _by_address(db: Database, report: BounceReport) -> list[_Match]:
    if not report.recipients:
        return []
    with db.session() as s:
        rows = s.execute(
            select(Subscriber.id, Subscriber.email).where(Subscriber.email.in_(report.recipients))
        ).all()
    return [_Match(sid, email, None) for sid, email in rows]


def _guessed_issue(
    db: Database, subscriber_id: int, report: BounceReport, now: datetime
) -> int | None:
    """What a report that names no issue is about: without a Message-ID, the issue last
    delivered to the subscriber; with one the delivery log doesn't hold (an issue whose log
    delivery.keep_log folded away, or no issue's), no issue: counted as unknown."""
    return None if report.message_id else _latest_issue(db, subscriber_id, now)


def _latest_issue(db: Database, subscriber_id: int, now: datetime) -> int | None:
    """The issue last delivered to the subscriber: what a report without a link is about."""
    with db.session() as s:
        return s.scalar(
            select(Delivery.issue_id)
            .where(
                Delivery.subscriber_id == subscriber_id,
                Delivery.status == DeliveryStatus.SENT,
                Delivery.sent_at <= now,
            )
            .order_by(Delivery.sent_at.desc())
            .limit(1)
        )
