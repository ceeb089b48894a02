"""Subscribers: validated addresses, section choices, import, status and token look-ups."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from digest.config import Settings
from digest.delivery.tokens import check_token, token_id
from digest.errors import InputError
from digest.models import Subscriber
from digest.storage import Database, utcnow
from digest.text import invisible_chars
from digest.types import SECTION_ORDER, SubscriberStatus

# Hard failures (5xx) in a row, across issues, after which we stop mailing an address.
BOUNCE_AFTER = 3
# Line breaks end a mail header; with them an "address" could add a Bcc: of its own.
# Longest display name: the To: header and a page's greeting, never an essay (the column: 256).
NAME_MAX = 200
_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL_HEADERS = ("email", "e-mail", "email address", "e-mail address", "address", "mail")


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

    @property
    def section_choice(self) -> frozenset[str] | None:
        return frozenset(self.sections) if self.sections is not None else None

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
        }


@dataclass
class ImportSummary:
    """What `digest subscribers import` did: counts and the refused lines with reasons."""

    added: int = 0
    skipped: int = 0  # already subscribed (in any status), or twice in the file
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)

    def line(self) -> str:
        return f"{self.added} added, {self.skipped} skipped, {len(self.invalid)} invalid"

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "invalid": [{"line": n, "text": t, "error": why} for n, t, why in self.invalid],
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
            stripped, check_deliverability=False, allow_display_name=True, allow_smtputf8=False
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
    ``resubscribed`` (an operator typed the address of someone unsubscribed or bounced). Someone
    who reported us as spam (complained) is refused unless ``force``: mailing them again costs
    the whole list its inbox placement.
    """
    address, display = parse_address(email)
    name = parse_name(name or display)
    stored_sections = parse_sections(sections) if sections is not None else None
    now = now or utcnow()
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            row = Subscriber(
                email=address,
                name=name,
                status=SubscriberStatus.ACTIVE,
                sections=stored_sections,
                created_at=now,
            )
            row.hard_bounces = 0
            s.add(row)
            s.flush()
            return _info(row), "added"
        if row.status == SubscriberStatus.COMPLAINED and not force:
            raise InputError(
                f"{address} reported this newsletter as spam: not subscribed again "
                "(--force if they asked for it themselves)"
            )
        outcome = "updated" if row.status == SubscriberStatus.ACTIVE else "resubscribed"
        row.status, row.unsubscribed_at, row.hard_bounces = SubscriberStatus.ACTIVE, None, 0
        if name is not None:
            row.name = name
        if sections is not None:
            row.sections = stored_sections
        return _info(row), outcome


def remove_subscriber(db: Database, email: str) -> SubscriberInfo:
    """Delete a subscriber and their delivery log; InputError when unknown."""
    address = _lookup_address(email)
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            raise InputError(f"no subscriber {address}")
        info = _info(row)
        s.delete(row)
        return info


def find_subscriber(db: Database, email: str) -> SubscriberInfo:
    """One subscriber by address; InputError when unknown."""
    address = _lookup_address(email)
    with db.session() as s:
        row = s.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
        if row is None:
            raise InputError(f"no subscriber {address}")
        return _info(row)


def list_subscribers(db: Database, status: SubscriberStatus | None = None) -> list[SubscriberInfo]:
    with db.session() as s:
        query = select(Subscriber).order_by(Subscriber.email)
        if status:
            query = query.where(Subscriber.status == status)
        return [_info(row) for row in s.scalars(query)]


def count_by_status(db: Database) -> dict[str, int]:
    """Subscribers in each status (every status named, zeros included), for `digest status`."""
    with db.session() as s:
        rows = s.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
        counts = dict.fromkeys(map(str, SubscriberStatus), 0)
        counts.update({str(status): n for status, n in rows})
        return counts


def import_subscribers(
    db: Database, text: str, *, sections: str | None = None, now: datetime | None = None
) -> ImportSummary:
    """Add every new valid address from a CSV with a header row, or from one address per line.

    Existing subscribers are skipped whatever their status: an old list must not re-subscribe
    people who left, bounced or complained.
    """
    default_sections = parse_sections(sections)
    summary = ImportSummary()
    now = now or utcnow()
    with db.session() as s:
        known = set(s.scalars(select(Subscriber.email)))
        for number, raw, fields in _rows(text):
            if isinstance(fields, str):
                summary.invalid.append((number, raw, fields))
                continue
            try:
                address, display = parse_address(fields.get("email", ""))
                chosen = fields.get("sections")
                row_sections = parse_sections(chosen) if chosen else default_sections
                name = parse_name(fields.get("name") or display)
            except InputError as e:
                summary.invalid.append((number, raw, str(e)))
                continue
            if address in known:
                summary.skipped += 1
                continue
            known.add(address)
            s.add(
                Subscriber(
                    email=address,
                    name=name or None,
                    status=SubscriberStatus.ACTIVE,
                    sections=row_sections,
                    created_at=now,
                    hard_bounces=0,
                )
            )
            summary.added += 1
    return summary


def _rows(text: str) -> list[tuple[int, str, dict[str, str] | str]]:
    """(line number, raw text, fields or why the line is unreadable) for each entry; fields
    have at least "email". One entry per line: no field of ours may hold a line break, so a
    quote left open costs its own line only, never the lines after it."""
    text = text.removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]  # a CR alone stays
    first = next((k for k, line in enumerate(lines) if line.strip()), 0)
    header = [cell.strip().lower() for cell in _cells(lines[first] if lines else "")]
    email_column = next((h for h in header if h in _EMAIL_HEADERS), None)
    if email_column is None:
        # One address per line; split on LF only, so a stray CR stays in (and is refused).
        return [
            (n, line.removesuffix("\r"), {"email": line.removesuffix("\r")})
            for n, line in enumerate(text.split("\n"), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    out: list[tuple[int, str, dict[str, str] | str]] = []
    for n, line in enumerate(lines[first + 1 :], first + 2):
        if not line.strip():
            continue
        try:
            cells = _cells(line)
        except csv.Error as e:
            out.append((n, _cut(line), f"not a CSV row: {_csv_problem(e)}"))
            continue
        fields = {h: c.strip(" \t") for h, c in zip(header, cells, strict=False)}
        fields["email"] = fields.pop(email_column, "")
        out.append((n, _cut(fields["email"]), fields))
    return out


def _cells(line: str) -> list[str]:
    return next(csv.reader([line], strict=True), [])


def _csv_problem(error: csv.Error) -> str:
    text = str(error)
    if "unexpected end of data" in text:
        return "a quote is opened and never closed"
    if "field larger than field limit" in text:
        return f"a field is longer than {csv.field_size_limit():,} characters"
    return text


def _cut(text: str, size: int = 120) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def unsubscribe(db: Database, subscriber_id: int, *, now: datetime | None = None) -> bool:
    """Mark a subscriber unsubscribed; False when already not active or unknown."""
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None or row.status == SubscriberStatus.UNSUBSCRIBED:
            return False
        row.status, row.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, now or utcnow()
        return True


def secret(db: Database, settings: Settings) -> str:
    """The key that signs unsubscribe tokens (configured, else generated once and stored)."""
    return db.secret_key(settings.secret_key())


def subscriber_for_token(db: Database, key: str, token: str) -> SubscriberInfo | None:
    """The subscriber a token names, when it is genuine; else None."""
    subscriber_id = token_id(token)
    if subscriber_id is None:
        return None
    with db.session() as s:
        row = s.get(Subscriber, subscriber_id)
        if row is None or not check_token(key, token, row.id, row.email):
            return None
        return _info(row)


def _lookup_address(email: str) -> str:
    try:
        return parse_address(email)[0]
    except InputError:
        return email.strip().lower()


def _info(row: Subscriber) -> SubscriberInfo:
    return SubscriberInfo(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        sections=sections_of(row.sections),
        created_at=row.created_at,
        unsubscribed_at=row.unsubscribed_at,
        hard_bounces=row.hard_bounces or 0,
    )
