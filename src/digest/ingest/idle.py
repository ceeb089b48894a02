"""A poll with nothing to do, answered with the standard library's sqlite3 (issue 22: start fast).

`digest poll` from cron, every few minutes, mostly finds nothing to fetch: an empty list, or
every feed gone or backing off. Loading SQLAlchemy to learn that costs more than the rest of
the command (`import sqlalchemy` alone: 0.20 s of a 0.32 s poll of an empty list, min of 15).
So the poll first asks the SQLite file itself, in one write transaction, whether there is
nothing to do: the schema at this version's head, the feed list as last synced (a stat), no
poll holding the lock, no Fetch rows due for their daily prune, and no active feed the policy
lets a poll fetch now. Then it keeps the poll's record as a poll would and answers with the
same summary. With a feed to fetch and nothing else unusual, start_poll takes the poll lock
in that same transaction and reads the jobs, for a poll that sends its first requests while
SQLAlchemy loads (ingest/early.py). Anything else (PostgreSQL, a changed list, a file it
cannot read, a database it does not recognise) is None, and the whole poll runs and says
whatever there is to say.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest.config import Settings
from digest.ingest import policy
from digest.ingest.summary import PollSummary
from digest.lockholder import LockHolder, forget_token, hold_token, new_token
from digest.metakeys import FETCHES_PRUNED, LAST_POLL, POLLER, SYNCED_LIST, list_seen, lock_key
from digest.metakeys import synced_list as split_synced_list
from digest.revisions import head_revision
from digest.types import FeedJob, FeedStatus

SQLITE_FILE_URL = "sqlite:///"


@dataclass(frozen=True)
class StoredFeed:
    """What the policy reads of a feed (policy.FeedState), read with sqlite3."""

    status: FeedStatus
    error_count: int
    failing_since: datetime | None
    due_at: datetime | None
    next_fetch_at: datetime | None


@dataclass(frozen=True)
class EarlyStart:
    """A poll with feeds to fetch, started without SQLAlchemy (ingest/early.py): the poll lock
    taken (its row as DatabaseLock writes it, its token held here) and the jobs and the held
    feeds as feedstore.select_jobs reads them, in the same transaction."""

    path: Path
    now: datetime
    jobs: list[FeedJob]
    held: policy.Held
    holder: LockHolder


def idle_poll(settings: Settings, now: datetime, *, force: bool = False) -> PollSummary | None:
    """The summary of a poll at ``now`` that has nothing to fetch, its record kept; None when
    it may have something to do (the full poll then runs)."""
    answer = _answer(settings, now, force, take_lock=False)
    return answer if isinstance(answer, PollSummary) else None


def start_poll(
    settings: Settings, now: datetime, *, force: bool = False
) -> PollSummary | EarlyStart | None:
    """idle_poll's answer when there is nothing to fetch; when there is and nothing else is
    unusual, the poll lock taken and the jobs read (EarlyStart); None: the whole poll runs."""
    return _answer(settings, now, force, take_lock=True)


def _answer(
    settings: Settings, now: datetime, force: bool, take_lock: bool
) -> PollSummary | EarlyStart | None:
    started = time.monotonic()
    path = sqlite_file(settings.database.url)
    if path is None or not _private_and_ours(path):
        return None
    try:
        seen = list_seen(settings.feeds.opml)
    except OSError:
        return None  # no feed list: the full poll says how to make one
    try:
        with _immediate(path) as conn:
            if not _usual(conn, seen, now):
                return None
            if take_lock:
                jobs, held = jobs_and_held(conn, now, force)
                if jobs:
                    return EarlyStart(path, now, jobs, held, _take_lock(conn, now))
            else:
                idle = _held_if_idle(conn, now, force)
                if idle is None:
                    return None
                held = idle
            summary = PollSummary(held=held, skipped=sum(held.counts.values()))
            summary.elapsed_s = time.monotonic() - started
            _keep_record(conn, now, summary)
            return summary
    except (sqlite3.Error, ValueError):
        return None  # not a database we know how to read here: the full poll will say


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL (as SQLAlchemy reads it); None for anything
    else: another database, an in-memory one, query options, escapes."""
    if not url.startswith(SQLITE_FILE_URL):
        return None
    name = url[len(SQLITE_FILE_URL) :]
    if not name or name == ":memory:" or any(c in name for c in "?%#"):
        return None
    return Path(name).expanduser()


def _private_and_ours(path: Path) -> bool:
    """A file the full poll would open without a word: there, ours to read and write, not
    readable by others (it warns about that), its folder writable for SQLite's -wal file."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    writable = os.access(path, os.R_OK | os.W_OK) and os.access(
        path.absolute().parent, os.W_OK | os.X_OK
    )
    return writable and not mode & 0o077


@contextlib.contextmanager
def _immediate(path: Path) -> Iterator[sqlite3.Connection]:
    """A sqlite3 connection inside BEGIN IMMEDIATE (the write lock, as digest's writers take
    it), committed when the block ends normally, rolled back otherwise."""
    # The same wait for the lock as the database layer's (storage._make_engine): 30 s.
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def _usual(conn: sqlite3.Connection, seen: str, now: datetime) -> bool:
    """Nothing for the whole poll to do or say but fetching: the schema at head, the feed list
    as synced, no poll holding the lock, no prune due."""
    if _one(conn, "SELECT version_num FROM alembic_version") != head_revision():
        return False  # a migration to run
    if split_synced_list(_meta(conn, SYNCED_LIST))[1] != seen:
        return False  # the feed list changed (or was never synced)
    if _meta(conn, lock_key(POLLER)) is not None:
        return False  # a poll runs (or died holding the lock): the full poll says which
    pruned = _meta(conn, FETCHES_PRUNED)
    return not policy.fetch_prune_due(_utc(pruned) if pruned else None, now)


def _held_if_idle(conn: sqlite3.Connection, now: datetime, force: bool) -> policy.Held | None:
    """Why each active feed is left alone, when none may be fetched; else None."""
    feeds = []
    for row in conn.execute(_ACTIVE_FEEDS):  # a poll with work to do stops at its first feed
        feed = _feed_state(row)
        if policy.hold(feed, now, force=force) is None:
            return None
        feeds.append(feed)
    return policy.held(feeds, now, force=force)


_ACTIVE_FEEDS = (
    "SELECT status, error_count, failing_since, due_at, next_fetch_at FROM feeds WHERE active"
)


def _feed_state(row: tuple[str, int, str | None, str | None, str | None]) -> StoredFeed:
    status, error_count, failing_since, due_at, next_fetch_at = row
    return StoredFeed(
        FeedStatus(status), int(error_count), _utc(failing_since), _utc(due_at), _utc(next_fetch_at)
    )


@dataclass(frozen=True)
class _JobState(StoredFeed):
    """A feed as feedstore.JOB_STATE reads it: the policy's state and a FeedJob's fields."""

    id: int
    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None


# Row order as select_jobs' SELECT (rowid order): ties of policy.fetch_order keep it.
_JOBS = (
    "SELECT id, url, etag, last_modified, body_hash, status, error_count, failing_since, "
    "due_at, next_fetch_at FROM feeds WHERE active ORDER BY id"
)


def jobs_and_held(
    conn: sqlite3.Connection, now: datetime, force: bool
) -> tuple[list[FeedJob], policy.Held]:
    """feedstore.select_jobs (not due_only) with sqlite3: the feeds to fetch, longest waiting
    first, and why the others are left alone."""
    feeds = []
    for feed_id, url, etag, last_modified, body_hash, *state in conn.execute(_JOBS):
        stored = vars(_feed_state(tuple(state)))
        feeds.append(_JobState(**stored, id=feed_id, url=url, etag=etag,
                               last_modified=last_modified, body_hash=body_hash))  # fmt: skip
    may_fetch = (f for f in feeds if policy.hold(f, now, force=force) is None)
    fetchable = sorted(may_fetch, key=policy.fetch_order)
    jobs = [FeedJob(f.id, f.url, f.etag, f.last_modified, f.body_hash) for f in fetchable]
    return jobs, policy.held(feeds, now, force=force)


def _take_lock(conn: sqlite3.Connection, now: datetime) -> LockHolder:
    """The poll lock, its row written as DatabaseLock.acquire writes it (none is there: _usual
    looked in this transaction); the token held here before the row is written."""
    holder = LockHolder(os.getpid(), socket.gethostname(), now, now, new_token())
    hold_token(holder.token)
    conn.execute(
        "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?)",
        (lock_key(POLLER), holder.to_json(), _stored(now)),
    )
    return holder


def release_early(start: EarlyStart) -> None:
    """The lock row start_poll wrote removed, if it is still ours (a poll that could not go
    on without SQLAlchemy: the whole poll runs instead)."""
    try:
        with _immediate(start.path) as conn:
            value = _meta(conn, lock_key(POLLER))
            holder = LockHolder.from_json(value) if value is not None else None
            if holder is not None and holder.token == start.holder.token:
                conn.execute("DELETE FROM meta WHERE key = ?", (lock_key(POLLER),))
    finally:
        forget_token(start.holder.token)


def _keep_record(conn: sqlite3.Connection, now: datetime, summary: PollSummary) -> None:
    """The last poll's record, as tally.record_poll keeps it (no requests to add)."""
    record = json.dumps({"at": now.isoformat(), **summary.record()})
    stamp = _stored(now)
    changed = conn.execute(
        "UPDATE meta SET value = ?, updated_at = ? WHERE key = ?", (record, stamp, LAST_POLL)
    )
    if not changed.rowcount:
        conn.execute(
            "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?)",
            (LAST_POLL, record, stamp),
        )


def _one(conn: sqlite3.Connection, sql: str) -> object:
    rows = conn.execute(sql).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _utc(text: str | None) -> datetime | None:
    """A time as models.UTCDateTime stores it on SQLite (naive UTC text), or an ISO time."""
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(when: datetime) -> str:
    """``when`` as models.UTCDateTime stores it on SQLite (SQLAlchemy's text for a naive UTC
    datetime)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
