"""Polling: sync the feeds with the feed list, fetch the fetchable ones concurrently on one
event loop, parse changed bodies in a process pool, store each result as it is ready.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from digest.config import Settings
from digest.errors import LockedError, StorageError
from digest.ingest.feedstore import prune_fetches, select_jobs
from digest.ingest.feedsync import sync_feeds
from digest.ingest.parsers import ParserPool
from digest.ingest.poller import Poller
from digest.ingest.summary import PollSummary, ProgressFn, SyncResult
from digest.ingest.tally import record_poll
from digest.locks import POLLER, Held, holding
from digest.storage import Database, utcnow
from digest.types import FeedSource
from digest.words import counted

if TYPE_CHECKING:  # httpx and the fetch code load when there is something to fetch
    import httpx

log = logging.getLogger(__name__)


def poll_feeds(
    db: Database,
    settings: Settings,
    sources: Sequence[FeedSource] | None,
    *,
    now: datetime | None = None,
    due_only: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
    parsers: ParserPool | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    store_thread: concurrent.futures.Executor | None = None,
) -> PollSummary:
    """Sync with the feed list (``sources``: the OPML file's feeds; None when the caller has
    synced already), then fetch every fetchable feed once and store the results.

    ``parsers``: a parser pool that outlives this poll (the daemon's); without it the poll
    makes its own and shuts it down at the end. ``loop`` (running in a thread of the caller's)
    and ``store_thread`` (one thread) likewise outlive the poll when given: the poll runs on
    that loop and stores from that thread; ``client`` must then be used on that loop only.

    ``due_only`` (the daemon) fetches only feeds whose regular time has come; ``force``
    (`digest poll --force`) also those backing off after errors (never one that answered 410,
    nor one whose server asked to wait: policy.hold). When ``stop``
    is set, no new fetch starts; fetches in flight (and bodies waiting for a parser) are
    dropped unsaved; bodies being parsed are parsed and stored, stores in flight finish.
    One poll at a time per database: LockedError names the poll that runs (the daemon's, or
    another `digest poll`). ``progress`` hears how far it has come, at each feed done and
    every PROGRESS_EVERY_S. Raises StorageError when the database fails, LockedError when
    another poll took the lock over (this poll's heartbeat was late): it stops at once.
    """
    started = time.monotonic()
    now = now or utcnow()
    with holding(db, POLLER, stop=stop) as held:
        # held.stop: the caller's stop, or the lock lost (another poll took it over).
        synced = sync_feeds(db, sources, now) if sources is not None else SyncResult()
        summary = PollSummary(sync=synced)
        jobs, summary.held = select_jobs(db, now, due_only, force)
        summary.skipped = sum(summary.held.counts.values())
        if jobs and not held.stop.is_set():
            poller = Poller(db, settings, now, held.stop, summary, progress)
            _run(poller.run(jobs, client, parsers, store_thread), loop)
        elif jobs:
            summary.skipped += len(jobs)
        _finish(db, now, summary, held, started)
    if summary.store_failures:
        raise StorageError(_store_failed(summary))
    return summary


def _finish(db: Database, now: datetime, summary: PollSummary, held: Held, started: float) -> None:
    """A poll's end, the lock still held: the daily prune and the poll's record."""
    if held.lost:
        # Whatever it fetched is stored; the rest is the newcomer's: fail this round.
        raise LockedError(f"{held.lost}: this poll stopped ({summary.line()})")
    prune_fetches(db, now)
    summary.elapsed_s = time.monotonic() - started
    record_poll(db, now, summary.record(), summary.fetches)


class OpenedLate:
    """The database side of a poll whose fetching started without it (ingest/early.py):
    opened, the poll lock adopted (its heartbeat running) in a thread of its own while the
    first requests are out; the poll ends here as poll_feeds ends."""

    def __init__(self, url: str, held: Held) -> None:
        self.db = Database(url)
        self.held = held
        self._lock = contextlib.ExitStack()
        try:
            self._lock.enter_context(holding(self.db, POLLER, adopt=held))
        except BaseException:
            self.db.dispose()
            raise

    def finish(self, now: datetime, summary: PollSummary, started: float) -> PollSummary:
        """Prune, record and release, as poll_feeds does after its fetching."""
        try:
            with self._lock:
                _finish(self.db, now, summary, self.held, started)
        finally:
            self.db.dispose()
        if summary.store_failures:
            raise StorageError(_store_failed(summary))
        return summary

    def close(self) -> None:
        """The poll failed before its end: the lock released, nothing recorded."""
        try:
            self._lock.close()
        finally:
            self.db.dispose()


def _run(work: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop | None) -> None:
    """The poll's work on the caller's lasting loop (in its own thread), else on a new one."""
    if loop is None:
        asyncio.run(work)
    else:
        asyncio.run_coroutine_threadsafe(work, loop).result()


def _store_failed(summary: PollSummary) -> str:
    """The poll's error when a bug kept feeds from being stored (the rest of it was done)."""
    failures = summary.store_failures
    more = f" (and {counted(len(failures) - 1, 'other feed')})" if len(failures) > 1 else ""
    return (
        f"the poll could not store {failures[0]}{more}; the other feeds were stored "
        f"({summary.line()}); --log-level debug shows the traceback"
    )
