"""Readers' own say over their subscription: sign-up and its confirmation, section changes,
leaving and coming back, each kept as an event with its time; the consent record; what is
stored about one person, and erasing it. No SMTP here: a sign-up returns what to mail, and
the caller (the web's outbox, the CLI) mails it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from digest.config import UNCONFIRMED_KEPT
from digest.delivery import counts, forgotten
from digest.delivery.subscribers import SubscriberInfo, info_of, parse_address, record_event
from digest.errors import InputError
from digest.models import Delivery, Issue, Subscriber, SubscriberEvent
from digest.storage import Database
from digest.types import SECTION_TITLES, ConsentSource, EventKind, SubscriberStatus

# Confirmation (or reminder) emails to one address in any 24 hours: a stranger typing your
# address into the form costs you at most this many emails a day.
MAILS_PER_DAY = 3
MAIL_KINDS = (EventKind.CONFIRM_SENT, EventKind.REMINDER_SENT)


@dataclass(frozen=True)
class SignUp:
    """What one sign-up came to: the subscriber, and what to mail them (None: nothing)."""

    subscriber_id: int
    mail: EventKind | None  # CONFIRM_SENT (a link to confirm) or REMINDER_SENT (their links)
    event_id: int | None = None  # the mail's event: undo_mail() when it could not be queued


def sign_up(
    db: Database,
    address: str,
    *,
    name: str | None,
    sections: str | None,
    now: datetime,
    ip: str | None = None,
    source: ConsentSource = ConsentSource.WEB,
) -> SignUp:
    """Record a sign-up for a parsed address; sections in their stored form (None: all).

    A new address becomes ``pending`` (never mailed an issue until confirmed); a pending one
    takes the name and sections given. An unsubscribed or bounced one keeps its own until it
    confirms (from the form, anyone may type anyone's address: a stranger must not rename a
    former reader or pick their sections; the operator may). An active one is left as it is and
    gets a reminder of its own links instead. One who complained is never mailed again, not
    even to confirm: ``mail`` None, as over the limit of MAILS_PER_DAY mails per address a day.
    """
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            row = Subscriber(email=address, status=SubscriberStatus.PENDING, hard_bounces=0)
            s.add(row)
        if row.status == SubscriberStatus.COMPLAINED:
            s.flush()
            record_event(s, row.id, EventKind.SIGNED_UP, now, "not mailed: complained", ip)
            return SignUp(row.id, None)
        if row.status == SubscriberStatus.ACTIVE:
            mail = EventKind.REMINDER_SENT
        else:
            mail = EventKind.CONFIRM_SENT
            if row.status == SubscriberStatus.PENDING or source != ConsentSource.WEB:
                row.name = name or row.name
                row.sections, row.source = sections, source
            if row.status == SubscriberStatus.PENDING:
                row.created_at = now  # a pending sign-up is kept a week from its latest try
        s.flush()
        detail = None if mail == EventKind.REMINDER_SENT else describe_sections(sections)
        record_event(s, row.id, EventKind.SIGNED_UP, now, detail, ip)
        sent = s.scalar(
            select(func.count())
            .select_from(SubscriberEvent)
            .where(
                SubscriberEvent.subscriber_id == row.id,
                SubscriberEvent.kind.in_(MAIL_KINDS),
                SubscriberEvent.at > now - timedelta(days=1),
            )
        )
        if (sent or 0) >= MAILS_PER_DAY:
            return SignUp(row.id, None)
        event = record_event(s, row.id, mail, now)
        s.flush()
        return SignUp(row.id, mail, event.id)


def undo_mail(db: Database, event_id: int) -> None:
    """The mail a sign-up asked for was not queued: it doesn't count towards the day's."""
    with db.session() as s:
        s.execute(delete(SubscriberEvent).where(SubscriberEvent.id == event_id))


def confirm(db: Database, subscriber_id: int, *, now: datetime, ip: str | None) -> SubscriberInfo:
    """The owner confirmed by email: active with the sections they chose, recorded with the
    confirming request's address; a forgotten address is remembered no more."""
    salt = forgotten.salt(db)
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None:
            raise InputError(f"no subscriber with id {subscriber_id}")
        if row.status != SubscriberStatus.ACTIVE:
            row.status, row.unsubscribed_at, row.hard_bounces = SubscriberStatus.ACTIVE, None, 0
            row.confirmed_at, row.confirm_ip = now, ip
            record_event(s, row.id, EventKind.CONFIRMED, now, describe_sections(row.sections), ip)
            forgotten.release(s, salt, row.email)
        return info_of(row)


def change_sections(
    db: Database, subscriber_id: int, sections: str | None, *, now: datetime, ip: str | None
) -> bool:
    """Set a subscriber's sections (stored form); False when nothing changed."""
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None or row.sections == sections:
            return False
        row.sections = sections
        record_event(s, row.id, EventKind.SECTIONS, now, describe_sections(sections), ip)
        return True


def resubscribe(
    db: Database, subscriber_id: int, sections: str | None, *, now: datetime, ip: str | None
) -> bool:
    """Back on the list with the sections ticked (stored form) from the preferences or the
    unsubscribed page (their link came to their inbox: that is their confirmation); False when
    already active."""
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None or row.status == SubscriberStatus.ACTIVE:
            return False
        was = row.status
        row.status, row.unsubscribed_at, row.hard_bounces = SubscriberStatus.ACTIVE, None, 0
        row.sections = sections
        detail = f"was {was}; {describe_sections(sections)}"
        record_event(s, row.id, EventKind.RESUBSCRIBED, now, detail, ip)
        return True


# Stale sign-ups deleted per transaction by the hourly prune (each cascades to its events and
# deliveries through their subscriber_id indexes): 1,000 of them beside 2.6M deliveries took
# 0.16 s in 10 transactions, the longest 0.05 s (bench/history.py, SQLite; 394.6 s in one
# transaction before the indexes).
PRUNE_BATCH = 100


def prune_unconfirmed(db: Database, now: datetime, kept: timedelta = UNCONFIRMED_KEPT) -> int:
    """Delete the sign-ups still unconfirmed a week after their latest try, in batches of
    PRUNE_BATCH (one that confirms meanwhile is kept); how many."""
    stale = (Subscriber.status == SubscriberStatus.PENDING, Subscriber.created_at < now - kept)
    return db.delete_in_batches(Subscriber.id, *stale, batch=PRUNE_BATCH)


def forget(db: Database, email: str, now: datetime) -> bool:
    """Erase an address and everything kept about it (its row, history and delivery log),
    keeping only a keyed hash so an import won't add it back. False when it was no subscriber
    (its hash is kept all the same: "never add me")."""
    address = parse_address(email)[0]
    salt = forgotten.salt(db)
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        forgotten.remember(s, salt, address)
        if row is None:
            return False
        s.execute(delete(SubscriberEvent).where(SubscriberEvent.subscriber_id == row.id))
        counts.drop_unsent(s, row.id)
        s.execute(delete(Delivery).where(Delivery.subscriber_id == row.id))
        s.delete(row)
        return True


def export(db: Database, email: str) -> dict[str, Any]:
    """Everything stored about one address: the subscriber, the consent record, each change
    with its time and address, and each delivery. InputError when unknown."""
    address = parse_address(email)[0]
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            raise InputError(f"no subscriber {address}")
        events = s.scalars(
            select(SubscriberEvent)
            .where(SubscriberEvent.subscriber_id == row.id)
            .order_by(SubscriberEvent.at, SubscriberEvent.id)
        ).all()
        deliveries = s.execute(
            select(Issue.number, Delivery.status, Delivery.sent_at, Delivery.message_id)
            .join(Issue, Issue.id == Delivery.issue_id)
            .where(Delivery.subscriber_id == row.id)
            .order_by(Issue.number)
        ).all()
        return {
            **info_of(row).as_json(),
            "events": [
                {"at": e.at.isoformat(), "event": e.kind, "detail": e.detail, "ip": e.ip}
                for e in events
            ],
            "deliveries": [
                {
                    "issue": number,
                    "status": status,
                    "sent_at": sent_at.isoformat() if sent_at else None,
                    "message_id": message_id,
                }
                for number, status, sent_at, message_id in deliveries
            ],
        }


def describe_sections(sections: str | None) -> str:
    """Sections as pages and the history say them: "Machine Learning, Systems", or "all
    sections" for None."""
    if sections is None:
        return "all sections"
    return ", ".join(SECTION_TITLES[key] for key in sections.split(",") if key in SECTION_TITLES)
