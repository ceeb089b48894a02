"""`digest subscribers import`: a CSV with a header row, or one address per line, each line
costing itself only when it is broken.

The file is streamed: rows are checked and written BATCH at a time, and the database finds
the duplicates (the unique address: INSERT ... ON CONFLICT DO NOTHING) and the forgotten
addresses (their keyed hashes, looked up a batch at a time), never a set of every address in
memory. Measured (bench/readers.py): holding every row as an ORM object, 1,000,000 rows took
2,980 MB; streamed, the peak is the same at 10,000 rows as at 1,000,000.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import Connection, Dialect, Insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest.delivery import forgotten
from digest.delivery.subscribers import parse_address, parse_name, parse_sections
from digest.errors import InputError
from digest.models import Forgotten, Subscriber
from digest.storage import Database, utcnow
from digest.types import ConsentSource, SubscriberStatus

_EMAIL_HEADERS = ("email", "e-mail", "email address", "e-mail address", "address", "mail")
# Rows written per transaction: SQLite's write lock is held for one batch at a time (a few
# milliseconds), so a poll or a sign-up goes on beside a long import.
BATCH = 2000
# Refused lines kept with their text and reason (the rest are counted): a file of a million
# broken lines must not be held whole to be reported.
INVALID_SHOWN = 1000
# Longer lines are refused unread (csv refuses a field past 128 KB anyway).
LINE_LIMIT = 1 << 20


@dataclass
class ImportSummary:
    """What `digest subscribers import` did: counts and the refused lines with reasons."""

    added: int = 0
    skipped: int = 0  # already subscribed (in any status), or twice in the file
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, text, why)
    invalid_count: int = 0  # all refused lines; `invalid` holds the first INVALID_SHOWN
    forgotten: int = 0  # erased at their request: only their own confirmation brings them back

    def refuse(self, number: int, raw: str, why: str) -> None:
        self.invalid_count += 1
        if len(self.invalid) < INVALID_SHOWN:
            self.invalid.append((number, raw, why))

    @property
    def unshown(self) -> int:
        """Refused lines counted but not listed."""
        return self.invalid_count - len(self.invalid)

    def line(self) -> str:
        line = f"{self.added} added, {self.skipped} skipped, {self.invalid_count} invalid"
        if self.forgotten:
            line += f", {self.forgotten} left out (they asked to be forgotten)"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "forgotten": self.forgotten,
            "invalid_count": self.invalid_count,
            "invalid": [{"line": n, "text": t, "error": why} for n, t, why in self.invalid],
        }


def import_subscribers(
    db: Database,
    source: str | BinaryIO,
    *,
    sections: str | None = None,
    now: datetime | None = None,
) -> ImportSummary:
    """Add every new valid address from a CSV with a header row, or from one address per line
    (``source``: the text, or a binary file read line by line as UTF-8).

    Existing subscribers are skipped whatever their status: an old list must not re-subscribe
    people who left, bounced or complained; nor are those who asked to be forgotten added back.
    InputError when the file is not UTF-8 text (its first line isn't); a later line that
    isn't is refused on its own.
    """
    if isinstance(source, str):
        source = io.BytesIO(source.encode("utf-8", "surrogatepass"))
    default_sections = parse_sections(sections)
    sections_of = functools.lru_cache(maxsize=64)(parse_sections)  # a list has a few choices
    summary = ImportSummary()
    writer = _Writer(db, now or utcnow(), summary)
    batch: dict[str, _NewRow] = {}
    for number, raw, fields in _rows(_lines(source)):
        if isinstance(fields, str):
            summary.refuse(number, raw, fields)
            continue
        try:
            address, display = parse_address(fields.get("email", ""))
            chosen = fields.get("sections")
            row_sections = sections_of(chosen) if chosen else default_sections
            name = parse_name(fields.get("name") or display)
        except InputError as e:
            summary.refuse(number, raw, str(e))
            continue
        if address in batch:
            summary.skipped += 1
            continue
        batch[address] = _NewRow(name or None, row_sections)
        if len(batch) >= BATCH:
            writer.write(batch)
            batch = {}
    if batch:
        writer.write(batch)
    return summary


@dataclass(frozen=True, slots=True)
class _NewRow:
    name: str | None
    sections: str | None


class _Writer:
    """Writes one batch per transaction; counts what the database says was added, already
    there, or forgotten."""

    def __init__(self, db: Database, now: datetime, summary: ImportSummary) -> None:
        self.db = db
        self.salt = forgotten.salt(db)
        self.summary = summary
        constant = {
            "status": SubscriberStatus.ACTIVE,
            "created_at": now,
            "hard_bounces": 0,
            "source": ConsentSource.IMPORT,
        }
        self.constant = constant
        # The columns' own conversions, done once: through SQLAlchemy, converting them again
        # for every row was a quarter of an import's CPU (bench/readers.py, 100,000 rows).
        dialect = db.engine.dialect
        self.stored = tuple(_stored(name, value, dialect) for name, value in constant.items())
        self.insert = _insert_new(db)

    def write(self, batch: dict[str, _NewRow]) -> None:
        with self.db.session() as s:
            if s.scalar(select(Forgotten.digest).limit(1)) is not None:
                self._leave_out_forgotten(s, batch)
            if not batch:
                return
            added = self._insert(s.connection(), batch)
        self.summary.added += added
        self.summary.skipped += len(batch) - added

    def _insert(self, conn: Connection, batch: dict[str, _NewRow]) -> int:
        """The rows of ``batch`` the database added (an address already there is not)."""
        if self.db.is_sqlite:
            # sqlite3's executemany counts the rows it changed: those added.
            rows = [(a, r.name, r.sections, *self.stored) for a, r in batch.items()]
            return conn.exec_driver_sql(_SQLITE_INSERT, rows).rowcount
        # psycopg's count is not the rows added (it counted the skipped ones): RETURNING.
        values = [{"email": a, "name": r.name, "sections": r.sections} for a, r in batch.items()]
        return len(conn.execute(self.insert, [{**v, **self.constant} for v in values]).all())

    def _leave_out_forgotten(self, s: Session, batch: dict[str, _NewRow]) -> None:
        by_hash = {forgotten.address_hash(self.salt, address): address for address in batch}
        erased = s.scalars(select(Forgotten.digest).where(Forgotten.digest.in_(list(by_hash))))
        for digest in erased:
            del batch[by_hash[digest]]
            self.summary.forgotten += 1


_SQLITE_INSERT = (
    "INSERT INTO subscribers (email, name, sections, status, created_at, hard_bounces, source) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING"
)


def _stored(name: str, value: object, dialect: Dialect) -> object:
    """``value`` as column ``name`` of subscribers hands it to the driver."""
    convert = Subscriber.__table__.c[name].type.bind_processor(dialect)
    return convert(value) if convert else value


def _insert_new(db: Database) -> Insert:
    """INSERT of subscribers that leaves out an address already there (in any status),
    returning the rows it added."""
    insert = sqlite_insert(Subscriber) if db.is_sqlite else postgresql_insert(Subscriber)
    return insert.on_conflict_do_nothing(index_elements=["email"]).returning(Subscriber.id)


def _lines(source: BinaryIO) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text without its LF, or None and why it can't be read) for each line.
    Split on LF only: a CR alone stays in the line (and is refused), a CR before the LF goes."""
    number = 0
    while chunk := source.readline(LINE_LIMIT):
        number += 1
        if len(chunk) == LINE_LIMIT and not chunk.endswith(b"\n"):
            while (rest := source.readline(LINE_LIMIT)) and not rest.endswith(b"\n"):
                pass
            yield number, None, f"a line is longer than {LINE_LIMIT:,} bytes"
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None, "not UTF-8 text"
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield number, text.removesuffix("\n").removesuffix("\r"), ""


def _rows(
    lines: Iterable[tuple[int, str | None, str]],
) -> Iterator[tuple[int, str, dict[str, str] | str]]:
    """(line number, raw text, fields or why the line is unreadable) for each entry; fields
    have at least "email". One entry per line: no field of ours may hold a line break, so a
    quote left open costs its own line only, never the lines after it."""
    lines = iter(lines)
    first = next(((n, t, why) for n, t, why in lines if t is None or t.strip()), None)
    if first is None:
        return
    number, text, why = first
    if text is None:
        raise InputError(why)  # the first line: this is no list of addresses
    try:
        header = [cell.strip().lower() for cell in _cells(text)]
    except csv.Error:
        header = []
    email_column = next((h for h in header if h in _EMAIL_HEADERS), None)
    if email_column is None:
        yield from _plain([first], lines)
        return
    for n, line, why in lines:
        if line is None:
            yield n, "", why
            continue
        if not line.strip():
            continue
        try:
            cells = _cells(line)
        except csv.Error as e:
            yield n, _cut(line), f"not a CSV row: {_csv_problem(e)}"
            continue
        fields = {h: c.strip(" \t") for h, c in zip(header, cells, strict=False)}
        fields["email"] = fields.pop(email_column, "")
        yield n, _cut(fields["email"]), fields


def _plain(
    *parts: Iterable[tuple[int, str | None, str]],
) -> Iterator[tuple[int, str, dict[str, str] | str]]:
    """One address per line; blank lines and # comments skipped."""
    for part in parts:
        for n, line, why in part:
            if line is None:
                yield n, "", why
            elif line.strip() and not line.lstrip().startswith("#"):
                yield n, _cut(line), _headerless_row(line) or {"email": line}


def _headerless_row(line: str) -> str | None:
    """Why ``line``, an address then more after a comma, is refused: a CSV row in a file whose
    first line names no email column (else None). Without this its reason was the address
    checker's "invalid characters: ','", which says nothing of the header it lacks."""
    first, comma, _rest = line.partition(",")
    if not comma or "@" not in first or "<" in first or line.count("@") > 1:
        return None
    return (
        f"{_cut(line)!r}: a CSV row, but the file's first line names no email column: a CSV "
        "starts with a header row, e.g. `email,name`"
    )


def _cells(line: str) -> list[str]:
    if '"' not in line and "\r" not in line and "\0" not in line and len(line) <= _FIELD_MAX:
        return line.split(",")  # what csv makes of it, without a reader a line
    return next(csv.reader([line], strict=True), [])


_FIELD_MAX = csv.field_size_limit()


def _csv_problem(error: csv.Error) -> str:
    text = str(error)
    if "unexpected end of data" in text:
        return "a quote is opened and never closed"
    if "field larger than field limit" in text:
        return f"a field is longer than {csv.field_size_limit():,} characters"
    return text


def _cut(text: str, size: int = 120) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
