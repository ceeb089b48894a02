"""`digest subscribers import`: a CSV with a header row, or one address per line, each line
costing itself only when it is broken."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from digest.delivery import forgotten
from digest.delivery.subscribers import parse_address, parse_name, parse_sections
from digest.errors import InputError
from digest.models import Subscriber
from digest.storage import Database, utcnow
from digest.types import ConsentSource, SubscriberStatus

_EMAIL_HEADERS = ("email", "e-mail", "email address", "e-mail address", "address", "mail")


@dataclass
class ImportSummary:
    """What `digest subscribers import` did: counts and the refused lines with reasons."""

    added: int = 0
    skipped: int = 0  # already subscribed (in any status), or twice in the file
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)
    forgotten: int = 0  # erased at their request: only their own confirmation brings them back

    def line(self) -> str:
        line = f"{self.added} added, {self.skipped} skipped, {len(self.invalid)} invalid"
        if self.forgotten:
            line += f", {self.forgotten} left out (they asked to be forgotten)"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "forgotten": self.forgotten,
            "invalid": [{"line": n, "text": t, "error": why} for n, t, why in self.invalid],
        }


def import_subscribers(
    db: Database, text: str, *, sections: str | None = None, now: datetime | None = None
) -> ImportSummary:
    """Add every new valid address from a CSV with a header row, or from one address per line.

    Existing subscribers are skipped whatever their status: an old list must not re-subscribe
    people who left, bounced or complained; nor are those who asked to be forgotten added back.
    """
    default_sections = parse_sections(sections)
    summary = ImportSummary()
    now = now or utcnow()
    salt = forgotten.salt(db)
    with db.session() as s:
        known = set(s.scalars(select(Subscriber.email)))
        erased = forgotten.forgotten_hashes(s)
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
            if erased and forgotten.address_hash(salt, address) in erased:
                summary.forgotten += 1
                continue
            s.add(
                Subscriber(
                    email=address,
                    name=name or None,
                    status=SubscriberStatus.ACTIVE,
                    sections=row_sections,
                    created_at=now,
                    hard_bounces=0,
                    source=ConsentSource.IMPORT,
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
