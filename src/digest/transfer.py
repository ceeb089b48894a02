"""`digest migrate --to URL`: the whole database copied into another (SQLite to PostgreSQL, or
back), in one transaction, into a target that holds nothing yet.

Everything goes: feeds, posts, issues, subscribers with their history, the delivery log, the
keys (meta: the signing key, so old unsubscribe links still work), curations, bounces. The
tables are the models' (Base.metadata, in foreign-key order), not a list written here, so a
table a later migration adds is copied too; the ids are kept (links and tokens name them),
and PostgreSQL's sequences are set past the largest. Lock rows are left out: a copy is held
by nobody.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Integer, Table, func, insert, select, text

from digest.errors import InputError
from digest.locks import LOCK_KEYS, refuse_if_held
from digest.models import Base, Meta
from digest.storage import Database, safe_url, wrap_db_errors
from digest.words import counted

# Rows per INSERT: a few MB of posts at most in memory, whatever the database's size.
BATCH = 1000


@dataclass
class Transfer:
    """What a migration copied: rows per table, in the order copied."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "from": self.source,
            "to": self.target,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        counts = ", ".join(counted(self.rows.get(table, 0), noun) for table, noun in _SHOWN)
        total = counted(sum(self.rows.values()), "row")
        return (
            f"copied {self.source} to {self.target}: {counts} ({total} in "
            f"{counted(len(self.rows), 'table')}) in {self.seconds:.1f} s"
        )


# The tables a migration's line names (all are copied; --json counts each).
_SHOWN = (
    ("feeds", "feed"),
    ("posts", "post"),
    ("issues", "issue"),
    ("subscribers", "subscriber"),
    ("deliveries", "delivery"),
    ("bounce_events", "bounce"),
)


def migrate(source: Database, target_url: str, now: datetime) -> Transfer:
    """Copy ``source`` into the database at ``target_url`` (created and brought to this
    version's schema if need be). Refused while a daemon, a send or a poll holds the source,
    and when the target holds anything; on any error the target is left as empty as it was."""
    if target_url == source.url:
        raise InputError("--to names the database digest uses now (database.url)")
    refuse_if_held(source, now, "migrating it (so nothing it writes is left behind)")
    started = time.monotonic()
    target = Database(target_url)
    try:
        transfer = Transfer(safe_url(source.url), safe_url(target_url))
        with (
            wrap_db_errors("copying the database", target_url),
            source.engine.connect() as src,
            target.engine.begin() as dst,  # one transaction: all of it, or nothing
        ):
            _refuse_if_not_empty(dst, target_url)
            if src.dialect.name == "postgresql":
                src.execution_options(isolation_level="REPEATABLE READ")
            with src.begin():  # one snapshot of the source
                for table in Base.metadata.sorted_tables:
                    transfer.rows[table.name] = _copy(src, dst, table)
            if dst.dialect.name == "postgresql":
                for table in Base.metadata.sorted_tables:
                    _advance_sequences(dst, table)
    finally:
        target.dispose()
    transfer.seconds = time.monotonic() - started
    return transfer


def _copy(src: Connection, dst: Connection, table: Table) -> int:
    query = select(table).order_by(*table.primary_key.columns)
    if table is Meta.__table__:
        query = query.where(table.c.key.not_in(LOCK_KEYS))
    copied = 0
    result = src.execution_options(yield_per=BATCH).execute(query)
    for rows in result.partitions(BATCH):
        dst.execute(insert(table), [dict(row._mapping) for row in rows])
        copied += len(rows)
    return copied


def _advance_sequences(dst: Connection, table: Table) -> None:
    """Set each serial key's sequence past the largest id copied (the ids came with the
    rows, so the sequence never moved: the next insert would collide)."""
    for column in table.primary_key.columns:
        if not isinstance(column.type, Integer) or column.autoincrement is False:
            continue
        sequence = dst.execute(
            select(func.pg_get_serial_sequence(table.name, column.name))
        ).scalar()
        if sequence is None:
            continue
        largest = dst.execute(select(func.max(column))).scalar()
        dst.execute(
            text("SELECT setval(:sequence, :value, :called)"),
            {"sequence": sequence, "value": largest or 1, "called": largest is not None},
        )


def _refuse_if_not_empty(dst: Connection, url: str) -> None:
    for table in Base.metadata.sorted_tables:
        count = dst.execute(select(func.count()).select_from(table)).scalar() or 0
        if count:
            raise InputError(
                f"{safe_url(url)} holds data ({count:,} rows in {table.name}): migrate copies "
                "into an empty database only"
            )
