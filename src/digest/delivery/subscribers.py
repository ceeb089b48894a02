"""Subscribers: validated addresses, section choices, import, status and token look-ups."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest.delivery import counts, forgotten
from digest.delivery.message import ENCODED_WORD
from digest.delivery.tokens import (
    UNSUBSCRIBE,
    check_confirm_token,
    check_token,
    confirm_claim,
    token_id,
)
from digest.errors import InputError
from digest.models import Subscriber, SubscriberEvent
from digest.storage import Database, utcnow
from digest.text import invisible_chars
from digest.types import SECTION_ORDER, ConsentSource, EventKind, SubscriberStatus

# Line breaks end a mail header; with them an "address" could add a Bcc: of its own.
# Longest display name: the To: header and a page's greeting, never an essay (the column: 256).
NAME_MAX = 200
_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SubscriberInfo:
    """One subscriber as commands and the web page show it."""

    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    sections: tuple[str, ...] | None  # None: every section
    created_at: datetime
    unsubscribed_at: datetime | None
    hard_bounces: int
    source: ConsentSource | None = None
    confirmed_at: datetime | None = None
    confirm_ip: str | None = None

    @property
    def stored_sections(self) -> str | None:
        """The sections as stored and as forms and events take them: "ml,systems", None: all."""
        return ",".join(self.sections) if self.sections is not None else None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "sections": list(self.sections) if self.sections is not None else "all",
            "created_at": self.created_at.isoformat(),
            "unsubscribed_at": self.unsubscribed_at.isoformat() if self.unsubscribed_at else None,
            "hard_bounces": self.hard_bounces,
            "consent": self.consent_json(),
        }

    def consent_json(self) -> dict[str, Any]:
        """How and when they came, and when and from where they confirmed by email (source
        null: added before digest kept a consent record)."""
        return {
            "source": self.source,
            "since": self.created_at.isoformat(),
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "confirm_ip": self.confirm_ip,
        }


def parse_address(text: str) -> tuple[str, str | None]:
    """A normalised address (lower case, IDN domain in ASCII) and a display name if given.

    Raises InputError for anything that isn't exactly one valid address, with the reason.
    """
    if _BREAKS.search(text):
        raise InputError(
            f"{text!r}: refused: an address can't contain a line break (it could inject headers)"
        )
    if _CONTROLS.search(text):
        raise InputError(f"{text!r}: refused: an address can't contain control characters")
    stripped = text.strip()
    if not stripped:
        raise InputError("empty address")
    if stripped.count("@") > 1 and re.search(r"[,;\s]", stripped.split("<")[-1]):
        raise InputError(f"{text!r}: several addresses; give one at a time")
    try:
        valid = validate_email(
            stripped,
            check_deliverability=False,
            # Display names are parsed only when there can be one: that parse is a fifth of
            # the validation's CPU (bench/readers.py, 100,000 rows).
            allow_display_name="<" in stripped,
            allow_smtputf8=False,
        )
    except EmailNotValidError as e:
        raise InputError(f"{text!r} is not a valid email address: {e}") from None
    address = valid.ascii_email or valid.normalized  # ascii_email is set: SMTPUTF8 is off
    return address.lower(), (valid.display_name or None)


def parse_name(name: str | None) -> str | None:
    """A display name as stored: no line break, control or invisible format character (they
    end up in the To: header and on pages), at most NAME_MAX characters; InputError saying
    which rule it breaks."""
    if name is None:
        return None
    if _BREAKS.search(name):
        raise InputError("a name can't contain a line break")
    if _CONTROLS.search(name):
        raise InputError("a name can't contain control characters")
    if ENCODED_WORD in name:
        raise InputError('a name can\'t contain "=?" (mail programs would decode it as a header)')
    hidden = invisible_chars(name)
    if hidden:
        raise InputError(f"a name can't contain invisible format characters ({', '.join(hidden)})")
    name = name.strip()
    if len(name) > NAME_MAX:
        raise InputError(f"a name has at most {NAME_MAX} characters (this one has {len(name)})")
    return name or None


def parse_sections(text: str | None) -> str | None:
    """``ml,systems`` -> the stored form (known keys, in issue order); None means every section."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    chosen = {part.strip().lower() for part in re.split(r"[,\s]+", text) if part.strip()}
    unknown = chosen - set(SECTION_ORDER)
    if unknown:
        raise InputError(
            f"unknown section {sorted(unknown)[0]!r}; choose from {', '.join(SECTION_ORDER)}, all"
        )
    if chosen == set(SECTION_ORDER):
        return None
    return ",".join(key for key in SECTION_ORDER if key in chosen)


def sections_of(stored: str | None) -> tuple[str, ...] | None:
    return tuple(stored.split(",")) if stored else None


def add_subscriber(
    db: Database,
    email: str,
    *,
    name: str | None = None,
    sections: str | None = None,
    now: datetime | None = None,
    force: bool = False,
) -> tuple[SubscriberInfo, str]:
    """Add one address; returns the subscriber and what happened.

    What happened: ``added``, ``updated`` (already active: name/sections changed as given) or
    ``resubscribed`` (an operator typed the address of someone unsubscribed, bounced or still
    to confirm). Someone who reported us as spam (complained) is refused unless ``force``:
    mailing them again costs the whole list its inbox placement. An address its owner asked us
    to forget is refused: only their own confirmation (`add --confirm`, or the sign-up form)
    brings it back.
    """
    address, display = parse_address(email)
    name = parse_name(name or display)
    stored_sections = parse_sections(sections) if sections is not None else None
    now = now or utcnow()
    salt = forgotten.salt(db)
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            if forgotten.is_forgotten(s, salt, address):
                raise InputError(
                    f"{address} asked to be forgotten: only their own confirmation brings them "
                    "back (`digest subscribers add --confirm` mails them a link)"
                )
            row = Subscriber(
                email=address,
                name=name,
                status=SubscriberStatus.ACTIVE,
                sections=stored_sections,
                created_at=now,
                source=ConsentSource.CLI,
            )
            row.hard_bounces = 0
            s.add(row)
            s.flush()
            record_event(s, row.id, EventKind.ADDED, now)
            return info_of(row), "added"
        if row.status == SubscriberStatus.COMPLAINED and not force:
            raise InputError(
                f"{address} reported this newsletter as spam: not subscribed again "
                "(--force if they asked for it themselves)"
            )
        outcome = "updated" if row.status == SubscriberStatus.ACTIVE else "resubscribed"
        if outcome == "resubscribed":
            record_event(s, row.id, EventKind.ADDED, now, f"was {row.status}")
        row.status, row.unsubscribed_at, row.hard_bounces = SubscriberStatus.ACTIVE, None, 0
        if name is not None:
            row.name = name
        if sections is not None:
            row.sections = stored_sections
        return info_of(row), outcome


def remove_subscriber(db: Database, email: str) -> SubscriberInfo:
    """Delete a subscriber and their delivery log; InputError when unknown."""
    address = _lookup_address(email)
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            raise InputError(f"no subscriber {address}")
        info = info_of(row)
        counts.drop_unsent(s, row.id)
        s.delete(row)
        return info


def find_subscriber(db: Database, email: str) -> SubscriberInfo:
    """One subscriber by address; InputError when unknown."""
    address = _lookup_address(email)
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            raise InputError(f"no subscriber {address}")
        return info_of(row)


def info_by_email(db: Database, email: str) -> SubscriberInfo | None:
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == email)).one_or_none()
        return info_of(row) if row is not None else None


def list_subscribers(db: Database, status: SubscriberStatus | None = None) -> list[SubscriberInfo]:
    with db.session() as s:
        query = select(Subscriber).order_by(Subscriber.email)
        if status:
            query = query.where(Subscriber.status == status)
        return [info_of(row) for row in s.scalars(query)]


def count_by_status(db: Database) -> dict[str, int]:
    """Subscribers in each status (every status named, zeros included), for `digest status`."""
    with db.session() as s:
        return counts_in(s)


def counts_in(s: Session) -> dict[str, int]:
    """count_by_status in the caller's session (from ix_subscribers_status_created alone)."""
    rows = s.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    counts = dict.fromkeys(map(str, SubscriberStatus), 0)
    counts.update({str(status): n for status, n in rows})
    return counts


def unsubscribe(
    db: Database,
    subscriber_id: int,
    *,
    now: datetime | None = None,
    ip: str | None = None,
    how: str = "one-click",
) -> bool:
    """Mark a subscriber unsubscribed; False when already unsubscribed or unknown."""
    now = now or utcnow()
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None or row.status == SubscriberStatus.UNSUBSCRIBED:
            return False
        row.status, row.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, now
        record_event(s, row.id, EventKind.UNSUBSCRIBED, now, how, ip)
        return True


def record_event(
    s: Session,
    subscriber_id: int,
    kind: EventKind,
    at: datetime,
    detail: str | None = None,
    ip: str | None = None,
) -> SubscriberEvent:
    """One line of a subscriber's history (what changed, when, from which address)."""
    event = SubscriberEvent(subscriber_id=subscriber_id, at=at, kind=kind, detail=detail, ip=ip)
    s.add(event)
    return event


def subscriber_for_token(
    db: Database, key: str, token: str, purpose: str = UNSUBSCRIBE
) -> SubscriberInfo | None:
    """The subscriber a token for ``purpose`` names, when it is genuine; else None."""
    subscriber_id = token_id(token)
    if subscriber_id is None:
        return None
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None or not check_token(key, token, row.id, row.email, purpose):
            return None
        return info_of(row)


def subscriber_for_confirm_token(
    db: Database, key: str, token: str
) -> tuple[SubscriberInfo, datetime] | None:
    """The subscriber a genuine confirmation token names, and when that token expires (the
    caller decides what an expired one earns); None for a token that is not ours."""
    claim = confirm_claim(token)
    if claim is None:
        return None
    with db.session() as s:
        row = s.get(Subscriber, claim[0])
        if row is None or not check_confirm_token(key, token, row.id, row.email):
            return None
        return info_of(row), claim[1]


def subscriber_by_id(db: Database, subscriber_id: int) -> SubscriberInfo | None:
    """One subscriber by id; None when there is none (forgotten or pruned meanwhile)."""
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        return info_of(row) if row is not None else None


def _lookup_address(email: str) -> str:
    try:
        return parse_address(email)[0]
    except InputError:
        return email.strip().lower()


def info_of(row: Subscriber) -> SubscriberInfo:
    return SubscriberInfo(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        sections=sections_of(row.sections),
        created_at=row.created_at,
        unsubscribed_at=row.unsubscribed_at,
        hard_bounces=row.hard_bounces or 0,
        source=row.source,
        confirmed_at=row.confirmed_at,
        confirm_ip=row.confirm_ip,
    )
