"""The poll's store thread: results stored from one thread, what has queued up committed
together (group commit), so the event loop never waits on the database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from datetime import datetime, timedelta

from digest.errors import DigestError, StorageError
from digest.ingest.feedstore import Stored, store_result, store_results
from digest.storage import Database
from digest.types import FeedResult

log = logging.getLogger(__name__)

# Feeds stored together in one transaction at most (group commit under load).
MAX_BATCH = 100
# How long the store thread waits for more results before a small batch: a commit costs
# ~1.3 ms on SQLite, and one per feed was a third of storing a cold poll. Not once the poll
# says no more results are coming (StoreWriter.last_result_in): the last batch of a warm poll
# of 500 feeds lingered the whole 30 ms after the last response, then the poll ended.
STORE_LINGER = 0.03


class StoreWriter:
    """Stores results from one thread, committing what has queued up together (group commit).

    Each feed's result is whole inside one transaction, so a crash loses whole feeds only, and
    the event loop never waits on the database. SQLite takes one writer at a time anyway.
    """

    def __init__(
        self,
        db: Database,
        now: datetime,
        poll_interval: timedelta,
        thread: concurrent.futures.Executor | None = None,
    ) -> None:
        """``thread``: a one-thread executor that outlives this writer (the daemon's, one for
        every round); without it the writer starts its own and shuts it down at close."""
        self.db, self.now, self.poll_interval = db, now, poll_interval
        self._own_thread = thread is None
        self._executor = thread or concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="digest-store"
        )
        self._lock = threading.Lock()
        self._pending: list[tuple[FeedResult, asyncio.Future[Stored]]] = []
        self._scheduled = False
        self._no_more = threading.Event()  # set by last_result_in: nothing worth waiting for

    def store(self, result: FeedResult) -> asyncio.Future[Stored]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        with self._lock:
            self._pending.append((result, future))
            if not self._scheduled:
                self._scheduled = True
                self._executor.submit(self._flush, loop)
        return future

    def last_result_in(self) -> None:
        """No more results will come (the poll has handed in every feed's): what is pending
        is stored at once, without waiting for company."""
        self._no_more.set()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._pending) < MAX_BATCH // 4:
            self._no_more.wait(STORE_LINGER)
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._pending:
                self._executor.submit(self._flush, loop)
            else:
                self._scheduled = False
        outcomes: list[Stored | BaseException]
        try:
            outcomes = self._store([r for r, _f in batch])
        except BaseException as e:  # the poll waits on these futures: settle them whatever happens
            log.debug("the store thread failed", exc_info=True)
            failure = e if isinstance(e, DigestError) else _thread_failed(e)
            outcomes = [failure] * len(batch)
        for (_r, future), outcome in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, outcome)

    def _store(self, results: list[FeedResult]) -> list[Stored | BaseException]:
        try:
            return list(store_results(self.db, results, self.now, self.poll_interval))
        except Exception:  # noqa: BLE001 - each feed is tried again on its own
            # One feed's values broke the batch (the database refused them, or a bug met them):
            # store each on its own so it costs that feed only.
            return [self._store_one(result) for result in results]

    def _store_one(self, result: FeedResult) -> Stored | BaseException:
        try:
            return store_result(self.db, result, self.now, self.poll_interval)
        except DigestError as e:
            return e
        except Exception as e:  # even setting the feed aside failed
            log.debug("feed %s: the store thread failed", result.job.url, exc_info=True)
            return _thread_failed(e, result.job.url)

    def close(self) -> None:
        """Wait until every result handed over is stored."""
        if self._own_thread:
            self._executor.shutdown(wait=True)
            return
        while True:
            # One thread, first in first out: once this marker has run, so has every flush
            # queued before it; one queued after it (a full batch left more) sets _scheduled.
            self._executor.submit(_nothing).result()
            with self._lock:
                if not self._scheduled:
                    return


def _nothing() -> None:
    pass


def _settle(future: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    if future.cancelled():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _thread_failed(error: BaseException, url: str | None = None) -> StorageError:
    """A failure in the store thread that is no DigestError (a bug), as the poll reports it."""
    where = f" storing {url}" if url else ""
    return StorageError(f"the store thread failed{where}: {type(error).__name__}: {error}")
