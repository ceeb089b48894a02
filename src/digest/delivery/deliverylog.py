"""The delivery log: one row per (issue, subscriber), the ledger that makes sending resumable.

Each row goes pending -> sending (committed before the message is handed to SMTP) -> sent |
failed | skipped. A server's 5xx for an address is a bounce heard at once: stored as a bounce
event (source "smtp") and judged as a DSN with the same code would be (bouncerules): a 550
5.1.1 bounces the subscriber now, a 5.7.1 block counts as a soft bounce.

A run that dies leaves at most the messages in flight as ``sending``, one per SMTP connection
(smtp.connections); the next run sends those again (they may have arrived: at most that many
duplicates per crash) and everything still ``pending``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, insert, literal, select, update

from digest.config import Settings
from digest.delivery import counts
from digest.delivery.bouncerules import kind_of_code, new_status
from digest.delivery.subscribers import sections_of
from digest.errors import PermanentSendError
from digest.models import BounceEvent, Delivery, Issue, Subscriber
from digest.storage import Database, utcnow, wrap_db_errors
from digest.types import BounceKind, DeliveryStatus, IssueStatus, SubscriberStatus
from digest.words import counted

# The source of the bounce events of refusals while sending (the others: imap, ses, postmark).
SMTP_SOURCE = "smtp"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryRow:
    """A pending delivery with what sending it needs of its subscriber."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None
    status: SubscriberStatus
    sections: frozenset[str] | None  # None: every section
    hard_bounces: int


class DeliveryLog:
    """Writes one run's delivery outcomes on one held connection, one transaction per message.

    An outcome waits and is written in the transaction that claims the next row, so a message
    costs one commit, and at any moment at most smtp.connections rows are 'sending': those
    whose messages are with SMTP. The last outcomes are written on close.
    """

    _claim = (
        update(Delivery)
        .where(Delivery.id == bindparam("row_id"), Delivery.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.SENDING,
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
        .where(Subscriber.id == bindparam("sub_id"), Subscriber.status == SubscriberStatus.ACTIVE)
        .values(status=SubscriberStatus.BOUNCED)
    )

    def __init__(
        self, db: Database, settings: Settings | None = None, issue_id: int | None = None
    ) -> None:
        self.conn = db.engine.connect()
        self.issue_id = issue_id
        self.soft = (settings or Settings()).bounces
        self.waiting: list[tuple[DeliveryRow, DeliveryStatus, str | None]] = []
        self.refusals: dict[int, str] = {}  # delivery id -> the server's status code
        self.bounced: list[str] = []
        self.in_flight: set[int] = set()  # delivery ids claimed, their outcome not written

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._write()
        finally:
            self.conn.close()

    def finish(self, row: DeliveryRow, status: DeliveryStatus, error: str | None) -> None:
        """Note an outcome; it is written with the next claim (or on close)."""
        self.waiting.append((row, status, error))

    def refused(self, row: DeliveryRow, error: PermanentSendError) -> None:
        """Note a 5xx for the row's address: failed, and a bounce (written with the next claim)."""
        self.refusals[row.delivery_id] = error.status
        self.finish(row, DeliveryStatus.FAILED, str(error))

    def claim(self, row: DeliveryRow, message_id: str) -> bool:
        """Mark row 'sending' and commit, before SMTP sees its message; False if taken."""
        return self._write((row, message_id))

    def _write(self, claim: tuple[DeliveryRow, str] | None = None) -> bool:
        """The waiting outcomes and the claim, with the issue's counts, in one transaction."""
        now = utcnow()
        claimed = True
        moves: list[tuple[DeliveryStatus, DeliveryStatus]] = []
        with wrap_db_errors("writing the delivery log"), self.conn.begin():
            for row, status, error in self.waiting:
                moves += self._write_outcome(row, status, error, now)
            if claim is not None:
                row, message_id = claim
                params = {"row_id": row.delivery_id, "message_id": message_id, "now": now}
                claimed = bool(self.conn.execute(self._claim, params).rowcount)
                if claimed:
                    self.in_flight.add(row.delivery_id)
                    moves.append((DeliveryStatus.PENDING, DeliveryStatus.SENDING))
            if self.issue_id is not None:
                went = any(after == DeliveryStatus.SENT for _before, after in moves)
                counts.add(
                    self.conn, self.issue_id, counts.transitions(moves), now if went else None
                )
        self.waiting = []
        return claimed

    def _write_outcome(
        self, row: DeliveryRow, status: DeliveryStatus, error: str | None, now: datetime
    ) -> list[tuple[DeliveryStatus, DeliveryStatus]]:
        """One outcome written; the move it made ([] when the row is gone: forgotten)."""
        sent_at = now if status == DeliveryStatus.SENT else None
        params = {"row_id": row.delivery_id, "status": status, "error": error}
        written = self.conn.execute(self._outcome, {**params, "now": now, "sent_at": sent_at})
        if status == DeliveryStatus.SENT and row.hard_bounces:
            self.conn.execute(self._good, {"sub_id": row.subscriber_id})
        elif row.delivery_id in self.refusals:
            self._refusal(row, self.refusals.pop(row.delivery_id), error or "", now)
        claimed = row.delivery_id in self.in_flight
        self.in_flight.discard(row.delivery_id)
        if not written.rowcount:
            return []
        return [(DeliveryStatus.SENDING if claimed else DeliveryStatus.PENDING, status)]

    def _refusal(self, row: DeliveryRow, status: str, error: str, now: datetime) -> None:
        """The bounce event of a refusal, and the subscriber bounced if the rules say so."""
        kind = kind_of_code(status)
        self.conn.execute(self._hard, {"sub_id": row.subscriber_id})
        event = {
            "at": now,
            "subscriber_id": row.subscriber_id,
            "issue_id": self.issue_id,
            "kind": kind,
            "source": SMTP_SOURCE,
            "source_id": hashlib.sha256(f"smtp\0{row.delivery_id}".encode()).hexdigest(),
            "status_code": status,
            "diagnostic": error[:500],
        }
        self.conn.execute(insert(BounceEvent), event)
        soft = self.conn.scalar(
            select(func.count()).where(
                BounceEvent.subscriber_id == row.subscriber_id,
                BounceEvent.kind == BounceKind.SOFT,
                BounceEvent.at >= now - self.soft.soft_window,
            )
        )
        if new_status(kind, row.status, int(soft or 0), self.soft.soft_limit) is None:
            return
        if self.conn.execute(self._bounce, {"sub_id": row.subscriber_id}).rowcount:
            self.bounced.append(row.email)


def snapshot(db: Database, issue_id: int) -> None:
    """On the first run for an issue, one pending delivery per active subscriber.

    The audience is fixed then: someone who subscribes while the issue is going out gets the
    next one, and a resumed run doesn't reach past the original list. One INSERT ... SELECT:
    the rows never pass through Python (building each as a dict made a send hold about 1 KB
    per reader), and it is all or nothing, so a crash can't leave half an audience.
    """
    with db.session() as s:
        if s.scalar(select(Delivery.id).where(Delivery.issue_id == issue_id).limit(1)):
            return
        if s.scalar(select(Issue.status).where(Issue.id == issue_id)) == IssueStatus.SENT:
            return
        columns = Delivery.__table__.c
        audience = (
            select(
                literal(issue_id, columns.issue_id.type),
                Subscriber.id,
                literal(DeliveryStatus.PENDING, columns.status.type),
                literal(0, columns.attempts.type),
                literal(utcnow(), columns.updated_at.type),
            )
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
            .order_by(Subscriber.id)
        )
        names = ["issue_id", "subscriber_id", "status", "attempts", "updated_at"]
        s.execute(insert(Delivery).from_select(names, audience))
        # Counted, not the INSERT's rowcount: PostgreSQL's driver reports -1 for INSERT ... SELECT.
        # Once per issue, from ix_deliveries_issue_status alone.
        added = s.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue_id)
        )
        counts.add(s, issue_id, {"pending": added or 0})


# A claim this recent may be a live run's whose lock was taken over (its heartbeat stalled
# past locks.STALE_AFTER: another host, a frozen VM): its message may be with the server now,
# and sending it again would deliver it twice. RFC 5321 (4.5.3.2.6) has a server wait 10
# minutes at most for the end of a message; our side gives up after smtp.timeout (30 s) a step.
IN_FLIGHT_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class InFlight:
    """What recover_in_flight found 'sending'."""

    resent: int = 0  # made pending again: they go again (each may already have arrived)
    waiting: int = 0  # claimed too recently by a run that may live: left for a later run


def recover_in_flight(
    db: Database, issue_id: int, claimed_before: datetime | None = None
) -> InFlight:
    """Rows a dead run left 'sending' go again; with ``claimed_before``, only those claimed
    before it (the previous run is not known to be gone: see IN_FLIGHT_GRACE)."""
    in_flight = and_(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.SENDING)
    old = (
        in_flight
        if claimed_before is None
        else and_(in_flight, Delivery.updated_at < claimed_before)
    )
    with db.session() as s:
        result = s.execute(
            update(Delivery)
            .where(old)
            .values(
                status=DeliveryStatus.PENDING, last_error="in flight when a run stopped; sent again"
            )
        )
        resent = int(getattr(result, "rowcount", 0) or 0)
        counts.add(s, issue_id, {"sending": -resent, "pending": resent})
    if resent:
        log.warning(
            "send: %d message(s) were in flight when a run died; sending them again", resent
        )
    waiting = count(db, issue_id, DeliveryStatus.SENDING)
    if waiting:
        log.warning("send: %s", left_in_flight(waiting))
    return InFlight(resent, waiting)


def left_in_flight(waiting: int) -> str:
    """What recover_in_flight left 'sending', in a line (the log's and the send summary's)."""
    minutes = int(IN_FLIGHT_GRACE.total_seconds() // 60)
    return (
        f"{counted(waiting, 'message')} in flight under a run that may still be sending them "
        f"(its lock was taken over) wait {minutes} minutes from their claim"
    )


# Pending deliveries read at a time, each page in a short transaction of its own: a send
# holds one page, not the list (the whole list took about 1 KB per reader).
PAGE = 1000


def pending_rows(db: Database, issue_id: int) -> Iterator[DeliveryRow]:
    """The issue's deliveries still to make, in subscriber order (the order of the snapshot),
    read PAGE at a time as the send goes: a row made pending again by this run (a transient
    failure) is behind the page and waits for the next run, as before."""
    after: int | None = None
    while True:
        with db.session() as s:
            page = [
                DeliveryRow(d, sub, email, name, status, choice_of(sections), bounces or 0)
                for d, sub, email, name, status, sections, bounces in s.execute(
                    page_query(issue_id, after)
                )
            ]
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].subscriber_id


def page_query(issue_id: int, after: int | None) -> Select[Any]:
    """A page of pending rows past subscriber ``after``: a range of the uq_delivery index
    (issue_id, subscriber_id), already in order (tests/delivery/test_send.py reads its plan)."""
    query = (
        select(Delivery.id, Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status)
        .add_columns(Subscriber.sections, Subscriber.hard_bounces)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.PENDING)
        .order_by(Delivery.subscriber_id)
        .limit(PAGE)
    )
    return query if after is None else query.where(Delivery.subscriber_id > after)


def choice_of(stored: str | None) -> frozenset[str] | None:
    """A subscriber's stored sections as the section choice an issue is rendered for."""
    keys = sections_of(stored)
    return frozenset(keys) if keys is not None else None


def count(db: Database, issue_id: int, status: DeliveryStatus) -> int:
    with db.session() as s:
        query = select(func.count()).where(Delivery.issue_id == issue_id, Delivery.status == status)
        return int(s.scalar(query) or 0)
