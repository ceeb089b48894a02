"""Sending an issue: a delivery log per (issue, subscriber), one rendering per section choice.

Each delivery row goes pending -> sending (committed before the message is handed to SMTP)
-> sent | failed | skipped. A run that dies leaves at most the messages in flight as
``sending``, one per SMTP connection (smtp.connections); the next run sends those again (they
may have arrived: at most that many duplicates per crash) and everything still ``pending``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import make_msgid
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from digest.config import Settings
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import PreparedEmail, address_header, sender_domain, unsubscribe_url
from digest.delivery.subscribers import (
    ACTIVE,
    BOUNCE_AFTER,
    BOUNCED,
    parse_address,
    secret,
    sections_of,
)
from digest.delivery.tokens import make_token
from digest.errors import InputError, PermanentSendError, SendError, TransientSendError
from digest.models import Delivery, Issue, Subscriber
from digest.storage import Database, utcnow, wrap_db_errors
from digest.types import RenderedEmail

log = logging.getLogger(__name__)

RenderFor = Callable[[frozenset[str] | None], RenderedEmail | None]
PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"
# Messages that each failed every retry, in a row, after which the server is taken to be down.
GIVE_UP_AFTER = 3


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
    from digest.issue.plan import plan_issue, record_issue, render_plan, render_recorded

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
        transports = [transport] if transport else _transports(settings, len(rows))
        try:
            _deliver_rows(
                db, settings, rows, render_for, transports, summary, stop, attempts, backoff
            )
        finally:
            if transport is None:
                for t in transports:
                    t.close()
    summary.pending = _count(db, issue_id, PENDING) + _count(db, issue_id, SENDING)
    if summary.pending == 0:
        with db.session() as s:
            s.execute(update(Issue).where(Issue.id == issue_id).values(status="sent"))
    summary.seconds = time.monotonic() - started
    log.info("deliveries of %s", summary.line())  # the caller logs the send event itself
    return summary


def _transports(settings: Settings, rows: int) -> list[SmtpTransport]:
    """smtp.connections transports (no more than there are messages), sharing smtp.rate."""
    n = max(1, min(settings.smtp.connections, rows))
    if settings.smtp.rate:
        settings = settings.replace(smtp={"rate": settings.smtp.rate / n})
    return [SmtpTransport(settings) for _ in range(n)]


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
    transports: list[SmtpTransport],
    summary: SendSummary,
    stop: threading.Event | None,
    attempts: int,
    backoff: float,
) -> None:
    """Claim, hand over and settle rows in order, with one message in flight per connection.

    This thread does every database write and rendering; the connections' threads only talk
    SMTP, so the server works on one message while the next is prepared and claimed.
    """
    prepare = _Preparer(db, settings, render_for)
    idle: queue.SimpleQueue[SmtpTransport] = queue.SimpleQueue()
    for transport in transports:
        idle.put(transport)

    def hand_over(raw: bytes, recipient: str) -> None:
        transport = idle.get()
        try:
            transport.send_with_retry(raw, recipient, attempts=attempts, backoff=backoff, stop=stop)
        finally:
            idle.put(transport)

    in_flight: deque[tuple[_Row, Future[None]]] = deque()
    streak = _FailingStreak()
    error: SendError | None = None
    with DeliveryLog(db) as dlog, ThreadPoolExecutor(len(transports)) as pool:
        try:
            for row in rows:
                if stop is not None and stop.is_set():
                    summary.stopped = True
                    break
                message = prepare(row, dlog, summary)
                if message is None or not dlog.claim(row, message[1]):
                    continue
                in_flight.append((row, pool.submit(hand_over, message[0], row.email)))
                if len(in_flight) >= len(transports):
                    _settle(*in_flight.popleft(), dlog, summary, streak)
                if summary.aborted:
                    break
        finally:
            # Whatever happens, the messages handed over are waited for and logged.
            while in_flight:
                try:
                    _settle(*in_flight.popleft(), dlog, summary, streak)
                except SendError as e:
                    error = error or e
    summary.bounced.extend(dlog.bounced)  # complete once the log is closed
    if error is not None:
        raise error


class _Preparer:
    """A subscriber's message bytes and Message-ID; each section choice rendered once."""

    def __init__(self, db: Database, settings: Settings, render_for: RenderFor) -> None:
        self.settings = settings
        self.render_for = render_for
        self.key = secret(db, settings)
        self.domain = sender_domain(settings)
        self.prepared: dict[frozenset[str] | None, PreparedEmail | None] = {}

    def __call__(
        self, row: _Row, dlog: DeliveryLog, summary: SendSummary
    ) -> tuple[bytes, str] | None:
        if row.status != ACTIVE:
            dlog.finish(row, SKIPPED, f"subscriber is {row.status}")
            summary.skipped += 1
            return None
        if row.sections not in self.prepared:
            rendered = self.render_for(row.sections)
            self.prepared[row.sections] = (
                PreparedEmail(rendered, self.settings) if rendered else None
            )
            summary.renders += 1
        email = self.prepared[row.sections]
        if email is None:
            dlog.finish(row, SKIPPED, "nothing in the chosen sections this week")
            summary.skipped += 1
            return None
        message_id = make_msgid(domain=self.domain)
        token = make_token(self.key, row.subscriber_id, row.email)
        try:
            raw = email.render(
                to=address_header(row.email, row.name),
                unsubscribe_url=unsubscribe_url(self.settings, token),
                message_id=message_id,
            )
        except InputError as e:  # a stored address or name we can't put in a header
            dlog.finish(row, FAILED, str(e))
            summary.failed += 1
            return None
        return raw, message_id


@dataclass
class _FailingStreak:
    """Messages that failed every retry in a row: after GIVE_UP_AFTER the server is down."""

    count: int = 0


def _settle(
    row: _Row,
    done: Future[None],
    dlog: DeliveryLog,
    summary: SendSummary,
    streak: _FailingStreak,
) -> None:
    try:
        done.result()
    except PermanentSendError as e:
        log.warning("send: %s", e)
        dlog.finish(row, FAILED, str(e))
        summary.failed += 1
        streak.count = 0
    except TransientSendError as e:
        dlog.finish(row, PENDING, str(e))
        streak.count += 1
        if streak.count >= GIVE_UP_AFTER:
            summary.aborted = f"the SMTP server keeps failing ({e})"
    except SendError:
        dlog.finish(row, PENDING, "the run stopped on an SMTP error")
        raise
    else:
        dlog.finish(row, SENT, None)
        summary.sent += 1
        streak.count = 0


class DeliveryLog:
    """Writes one run's delivery outcomes on one held connection, one transaction per message.

    An outcome waits and is written in the transaction that claims the next row, so a message
    costs one commit, and at any moment at most smtp.connections rows are 'sending': those
    whose messages are with SMTP. The last outcomes are written on close.
    """

    _claim = (
        update(Delivery)
        .where(Delivery.id == bindparam("row_id"), Delivery.status == PENDING)
        .values(
            status=SENDING,
            attempts=Delivery.attempts + 1,
            message_id=bindparam("message_id"),
            updated_at=bindparam("now"),
        )
    )
    _outcome = (
        update(Delivery)
        .where(Delivery.id == bindparam("row_id"))
        .values(
            status=bindparam("status"),
            last_error=bindparam("error"),
            updated_at=bindparam("now"),
            sent_at=bindparam("sent_at"),
        )
    )
    _good = update(Subscriber).where(Subscriber.id == bindparam("sub_id")).values(hard_bounces=0)
    _hard = (
        update(Subscriber)
        .where(Subscriber.id == bindparam("sub_id"))
        .values(hard_bounces=func.coalesce(Subscriber.hard_bounces, 0) + 1)
    )
    _bounce = (
        update(Subscriber)
        .where(
            Subscriber.id == bindparam("sub_id"),
            Subscriber.status == ACTIVE,
            Subscriber.hard_bounces >= BOUNCE_AFTER,
        )
        .values(status=BOUNCED)
    )

    def __init__(self, db: Database) -> None:
        self.conn = db.engine.connect()
        self.waiting: list[tuple[_Row, str, str | None]] = []
        self.bounced: list[str] = []

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._write()
        finally:
            self.conn.close()

    def finish(self, row: _Row, status: str, error: str | None) -> None:
        """Note an outcome; it is written with the next claim (or on close)."""
        self.waiting.append((row, status, error))

    def claim(self, row: _Row, message_id: str) -> bool:
        """Mark row 'sending' and commit, before SMTP sees its message; False if taken."""
        return self._write((row, message_id))

    def _write(self, claim: tuple[_Row, str] | None = None) -> bool:
        now = utcnow()
        claimed = True
        with wrap_db_errors("writing the delivery log"), self.conn.begin():
            for row, status, error in self.waiting:
                sent_at = now if status == SENT else None
                self.conn.execute(
                    self._outcome,
                    {"row_id": row.delivery_id, "status": status, "error": error, "now": now,
                     "sent_at": sent_at},
                )  # fmt: skip
                if status == SENT and row.hard_bounces:
                    self.conn.execute(self._good, {"sub_id": row.subscriber_id})
                elif status == FAILED:
                    self.conn.execute(self._hard, {"sub_id": row.subscriber_id})
                    if self.conn.execute(self._bounce, {"sub_id": row.subscriber_id}).rowcount:
                        self.bounced.append(row.email)
            if claim is not None:
                row, message_id = claim
                params = {"row_id": row.delivery_id, "message_id": message_id, "now": now}
                claimed = bool(self.conn.execute(self._claim, params).rowcount)
        self.waiting = []
        return claimed


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
