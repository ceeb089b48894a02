"""Sending an issue: a delivery log per (issue, subscriber), one rendering per section choice.

Each delivery row goes pending -> sending (committed before the message is handed to SMTP)
-> sent | failed | skipped. A run that dies leaves at most the message in flight as
``sending``; the next run sends those again (they may have arrived: at most one duplicate per
crash, as there is one SMTP connection) and everything still ``pending``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import make_msgid
from typing import Any

from sqlalchemy import func, insert, select, update

from digest.config import Settings
from digest.errors import InputError, PermanentSendError, SendError, TransientSendError
from digest.mail import SmtpTransport
from digest.message import PreparedEmail, address_header, sender_domain, unsubscribe_url
from digest.models import Delivery, Issue, Subscriber
from digest.storage import Database, utcnow
from digest.subscribers import ACTIVE, BOUNCE_AFTER, BOUNCED, parse_address, secret, sections_of
from digest.tokens import make_token
from digest.types import RenderedEmail

log = logging.getLogger(__name__)

RenderFor = Callable[[frozenset[str] | None], RenderedEmail | None]
PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"
# Messages that each failed every retry, in a row, after which the server is taken to be down.
GIVE_UP_AFTER = 3
# One connection, one message at a time: what a crash can leave unknown (README figure).
IN_FLIGHT = 1


@dataclass
class SendSummary:
    """What one `digest send` did (or, dry run, would do)."""

    mode: str = "send"  # send | dry-run | test | off | empty
    issue: int | None = None
    subject: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    sent: int = 0
    failed: int = 0  # a 5xx for that recipient
    skipped: int = 0  # no longer active, or their sections are empty this week
    pending: int = 0  # left for the next run (transient failures, a stop)
    already: int = 0  # delivered by an earlier run
    resent: int = 0  # in flight when a run died: sent again, may be duplicates
    renders: int = 0  # distinct section choices rendered
    bounced: list[str] = field(default_factory=list)
    stopped: bool = False
    aborted: str | None = None
    test_to: str | None = None
    recipients: list[dict[str, Any]] = field(default_factory=list)  # dry run: who gets what
    seconds: float = 0.0

    def line(self) -> str:
        name = f"issue #{self.issue}" if self.issue is not None else "the issue"
        if self.mode == "empty":
            return f"nothing to send: no new posts from {_day(self.window_start)} to " + _day(
                self.window_end
            )
        if self.mode == "off":
            return f"sending is off (smtp.host is not set): {name} recorded, nothing sent"
        if self.mode == "test":
            return f"test copy of {name} sent to {self.test_to}; nothing recorded"
        if self.mode == "dry-run":
            gets = sum(1 for r in self.recipients if r["gets"])
            return (
                f"dry run: {name} ({self.subject}) would go to {gets} of "
                f"{len(self.recipients)} active subscriber(s); nothing sent"
            )
        parts = [f"{self.sent} sent", f"{self.failed} failed", f"{self.skipped} skipped"]
        if self.already:
            parts.append(f"{self.already} sent before")
        if self.pending:
            parts.append(f"{self.pending} left for the next `digest send`")
        line = f"{name}: " + ", ".join(parts) + f" in {self.seconds:.1f}s"
        if self.resent:
            line += f"; {self.resent} in flight at a crash were sent again"
        if self.bounced:
            line += f"; now bounced: {', '.join(self.bounced)}"
        if self.aborted:
            line += f"; stopped early: {self.aborted}"
        elif self.stopped:
            line += "; stopped on request"
        return line

    def as_json(self) -> dict[str, Any]:
        data = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()
        }
        data["seconds"] = round(self.seconds, 3)
        if self.mode != "dry-run":
            del data["recipients"]
        return data


def send_issue(
    db: Database,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    to: str | None = None,
    stop: threading.Event | None = None,
    now: datetime | None = None,
) -> SendSummary:
    """Build this week's issue (or the one ending at as_of), record it, deliver it."""
    from digest.issues import plan_issue, record_issue, render_plan, render_recorded

    plan = plan_issue(db, settings, as_of, now=now)
    summary = SendSummary(window_start=plan.window_start, window_end=plan.window_end)
    summary.issue = plan.number
    if plan.empty:
        summary.mode = "empty"
        return summary
    if to is not None or dry_run:
        choices: dict[frozenset[str] | None, RenderedEmail | None] = {}

        def render_for(sections: frozenset[str] | None) -> RenderedEmail | None:
            if sections not in choices:
                layout, rendered = render_plan(db, settings, plan, sections)
                choices[sections] = None if layout.empty else rendered
            return choices[sections]

        if to is not None:
            return send_test(db, settings, render_for, to, summary)
        return dry_run_summary(db, render_for, plan.issue_id, summary)
    recorded = record_issue(db, settings, plan)
    assert recorded is not None  # not empty
    summary.issue, summary.subject = recorded.number, recorded.subject
    if not settings.sending_enabled:
        with db.session() as s:
            s.execute(
                update(Issue)
                .where(Issue.id == recorded.id, Issue.status == "recorded")
                .values(status="skipped")
            )
        summary.mode = "off"
        return summary
    return deliver(
        db,
        settings,
        recorded.id,
        lambda sections: render_recorded(db, settings, recorded.id, sections),
        stop=stop,
    )


def deliver(
    db: Database,
    settings: Settings,
    issue_id: int,
    render_for: RenderFor,
    *,
    stop: threading.Event | None = None,
    transport: SmtpTransport | None = None,
    attempts: int = 4,
    backoff: float = 1.0,
) -> SendSummary:
    """Deliver a recorded issue to its subscribers, resuming where an earlier run stopped."""
    started = time.monotonic()
    summary = SendSummary()
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        if issue is None:
            raise InputError(f"no issue with id {issue_id}")
        summary.issue, summary.subject = issue.number, issue.subject
        summary.window_start, summary.window_end = issue.window_start, issue.window_end
    _snapshot(db, issue_id)
    summary.resent = _recover_in_flight(db, issue_id)
    rows = _pending(db, issue_id)
    summary.already = _count(db, issue_id, SENT)
    if rows:
        own = transport is None
        transport = transport or SmtpTransport(settings)
        try:
            _deliver_rows(
                db, settings, rows, render_for, transport, summary, stop, attempts, backoff
            )
        finally:
            if own:
                transport.close()
    summary.pending = _count(db, issue_id, PENDING) + _count(db, issue_id, SENDING)
    if summary.pending == 0:
        with db.session() as s:
            s.execute(update(Issue).where(Issue.id == issue_id).values(status="sent"))
    summary.seconds = time.monotonic() - started
    log.info("send: %s", summary.line(), extra={"fields": {"event": "send", **summary.as_json()}})
    return summary


@dataclass(frozen=True)
class _Row:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None
    status: str
    sections: frozenset[str] | None
    hard_bounces: int


def _deliver_rows(
    db: Database,
    settings: Settings,
    rows: list[_Row],
    render_for: RenderFor,
    transport: SmtpTransport,
    summary: SendSummary,
    stop: threading.Event | None,
    attempts: int,
    backoff: float,
) -> None:
    key = secret(db, settings)
    domain = sender_domain(settings)
    prepared: dict[frozenset[str] | None, PreparedEmail | None] = {}
    failing = 0
    for row in rows:
        if stop is not None and stop.is_set():
            summary.stopped = True
            return
        if row.status != ACTIVE:
            _finish(db, row, SKIPPED, f"subscriber is {row.status}")
            summary.skipped += 1
            continue
        if row.sections not in prepared:
            rendered = render_for(row.sections)
            prepared[row.sections] = PreparedEmail(rendered, settings) if rendered else None
            summary.renders += 1
        email = prepared[row.sections]
        if email is None:
            _finish(db, row, SKIPPED, "nothing in the chosen sections this week")
            summary.skipped += 1
            continue
        message_id = make_msgid(domain=domain)
        try:
            raw = email.render(
                to=address_header(row.email, row.name),
                unsubscribe_url=unsubscribe_url(
                    settings, make_token(key, row.subscriber_id, row.email)
                ),
                message_id=message_id,
            )
        except InputError as e:  # a stored address or name we can't put in a header
            _fail(db, row, str(e), summary)
            continue
        if not _claim(db, row, message_id):
            continue  # another run took it
        try:
            transport.send_with_retry(raw, row.email, attempts=attempts, backoff=backoff, stop=stop)
        except PermanentSendError as e:
            _fail(db, row, str(e), summary)
            failing = 0
            continue
        except TransientSendError as e:
            _finish(db, row, PENDING, str(e))
            failing += 1
            if failing >= GIVE_UP_AFTER:
                summary.aborted = f"the SMTP server keeps failing ({e})"
                return
            continue
        except SendError:
            _finish(db, row, PENDING, "the run stopped on an SMTP error")
            raise
        _finish(db, row, SENT, None)
        summary.sent += 1
        failing = 0


def _snapshot(db: Database, issue_id: int) -> None:
    """On the first run for an issue, one pending delivery per active subscriber.

    The audience is fixed then: someone who subscribes while the issue is going out gets the
    next one, and a resumed run doesn't reach past the original list.
    """
    with db.session() as s:
        if s.scalar(select(func.count()).where(Delivery.issue_id == issue_id)):
            return
        if s.scalar(select(Issue.status).where(Issue.id == issue_id)) == "sent":
            return
        ids = s.scalars(
            select(Subscriber.id).where(Subscriber.status == ACTIVE).order_by(Subscriber.id)
        ).all()
        now = utcnow()
        if ids:
            s.execute(
                insert(Delivery),
                [
                    {"issue_id": issue_id, "subscriber_id": i, "status": PENDING, "attempts": 0,
                     "updated_at": now}
                    for i in ids
                ],
            )  # fmt: skip


def _recover_in_flight(db: Database, issue_id: int) -> int:
    """Rows a dead run left 'sending': they go again (each may already have arrived)."""
    with db.session() as s:
        result = s.execute(
            update(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.status == SENDING)
            .values(status=PENDING, last_error="in flight when a run stopped; sent again")
        )
        count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        log.warning("send: %d message(s) were in flight when a run died; sending them again", count)
    return count


def _pending(db: Database, issue_id: int) -> list[_Row]:
    with db.session() as s:
        query = (
            select(
                Delivery.id, Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status,
                Subscriber.sections, Subscriber.hard_bounces,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id, Delivery.status == PENDING)
            .order_by(Delivery.id)
        )  # fmt: skip
        return [
            _Row(d, sub, email, name, status, _choice(sections), bounces or 0)
            for d, sub, email, name, status, sections, bounces in s.execute(query)
        ]


def _choice(stored: str | None) -> frozenset[str] | None:
    keys = sections_of(stored)
    return frozenset(keys) if keys is not None else None


def _count(db: Database, issue_id: int, status: str) -> int:
    with db.session() as s:
        query = select(func.count()).where(Delivery.issue_id == issue_id, Delivery.status == status)
        return int(s.scalar(query) or 0)


def _claim(db: Database, row: _Row, message_id: str) -> bool:
    """Mark the row 'sending' and commit, before SMTP sees the message."""
    with db.session() as s:
        result = s.execute(
            update(Delivery)
            .where(Delivery.id == row.delivery_id, Delivery.status == PENDING)
            .values(
                status=SENDING,
                attempts=Delivery.attempts + 1,
                message_id=message_id,
                updated_at=utcnow(),
            )
        )
        return bool(getattr(result, "rowcount", 0))


def _finish(db: Database, row: _Row, status: str, error: str | None) -> None:
    now = utcnow()
    values: dict[str, Any] = {"status": status, "last_error": error, "updated_at": now}
    if status == SENT:
        values["sent_at"] = now
    with db.session() as s:
        s.execute(update(Delivery).where(Delivery.id == row.delivery_id).values(**values))
        if status == SENT and row.hard_bounces:
            s.execute(
                update(Subscriber).where(Subscriber.id == row.subscriber_id).values(hard_bounces=0)
            )


def _fail(db: Database, row: _Row, error: str, summary: SendSummary) -> None:
    """A hard failure: the delivery failed; after BOUNCE_AFTER in a row, the address bounced."""
    log.warning("send: %s", error)
    summary.failed += 1
    now = utcnow()
    with db.session() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.id == row.delivery_id)
            .values(status=FAILED, last_error=error, updated_at=now)
        )
        subscriber = s.get(Subscriber, row.subscriber_id)
        if subscriber is None:
            return
        subscriber.hard_bounces = (subscriber.hard_bounces or 0) + 1
        if subscriber.hard_bounces >= BOUNCE_AFTER and subscriber.status == ACTIVE:
            subscriber.status = BOUNCED
            summary.bounced.append(subscriber.email)


def send_test(
    db: Database, settings: Settings, render_for: RenderFor, to: str, summary: SendSummary
) -> SendSummary:
    """One copy of the whole issue to one address; records nothing."""
    address, _name = parse_address(to)
    summary.mode, summary.test_to = "test", address
    rendered = render_for(None)
    assert rendered is not None  # the plan is not empty
    summary.subject = rendered.subject
    with db.session() as s:
        subscriber = s.scalar(select(Subscriber).where(Subscriber.email == address))
        token = (
            make_token(secret(db, settings), subscriber.id, subscriber.email)
            if subscriber is not None
            else "test-copy"  # not a subscriber: the link leads to the "not valid" page
        )
    raw = PreparedEmail(rendered, settings).render(
        to=address, unsubscribe_url=unsubscribe_url(settings, token)
    )
    with SmtpTransport(settings) as transport:
        transport.send_with_retry(raw, address)
    summary.sent = 1
    return summary


def dry_run_summary(
    db: Database, render_for: RenderFor, issue_id: int | None, summary: SendSummary
) -> SendSummary:
    """Who would get what, sending and recording nothing."""
    summary.mode = "dry-run"
    with db.session() as s:
        subscribers = s.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.sections)
            .where(Subscriber.status == ACTIVE)
            .order_by(Subscriber.email)
        ).all()
        done: set[int] = set()
        if issue_id is not None:
            done = set(
                s.scalars(
                    select(Delivery.subscriber_id).where(
                        Delivery.issue_id == issue_id, Delivery.status.in_((SENT, FAILED, SKIPPED))
                    )
                )
            )
    seen: set[frozenset[str] | None] = set()
    for subscriber_id, email, sections in subscribers:
        choice = _choice(sections)
        rendered = render_for(choice)
        if choice not in seen:
            seen.add(choice)
            summary.renders += 1
        if summary.subject is None and rendered is not None:
            summary.subject = rendered.subject
        gets = rendered is not None and subscriber_id not in done
        why = "already done" if subscriber_id in done else ("" if gets else "sections empty")
        summary.recipients.append(
            {
                "email": email,
                "sections": sorted(choice) if choice else "all",
                "gets": gets,
                "subject": rendered.subject if gets and rendered else None,
                "why_not": why or None,
            }
        )
    return summary


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "?"
