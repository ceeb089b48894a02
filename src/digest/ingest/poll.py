"""Polling: sync the feeds with the feed list, fetch the fetchable ones concurrently on one
event loop, parse changed bodies in a process pool, store each result as it is ready.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from digest.config import Settings
from digest.errors import FetchError, LockedError, ParseError, StorageError
from digest.ingest import policy
from digest.ingest.feedstore import (
    Stored,
    prune_fetches,
    select_jobs,
)
from digest.ingest.feedsync import sync_feeds
from digest.ingest.parsers import ParserPool
from digest.ingest.slots import Driver, HostSlots
from digest.ingest.summary import PollProgress, PollSummary, ProgressFn, SyncResult
from digest.ingest.tally import record_poll
from digest.ingest.writer import StoreWriter
from digest.locks import POLLER, holding
from digest.startup import resume_collections
from digest.storage import Database, utcnow
from digest.types import (
    FeedJob,
    FeedResult,
    FeedSource,
    FeedStatus,
    FetchedFeed,
    FetchOutcome,
    Outcome,
)
from digest.words import counted

if TYPE_CHECKING:  # httpx and the fetch code load when there is something to fetch
    import httpx

log = logging.getLogger(__name__)
# How often the progress line is refreshed while nothing finishes (a slow feed).
PROGRESS_EVERY_S = 0.5


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
            poller = _Poller(db, settings, now, held.stop, summary, progress)
            _run(poller.run(jobs, client, parsers, store_thread), loop)
        elif jobs:
            summary.skipped += len(jobs)
        if held.lost:
            # Whatever it fetched is stored; the rest is the newcomer's: fail this round.
            raise LockedError(f"{held.lost}: this poll stopped ({summary.line()})")
        prune_fetches(db, now)
        summary.elapsed_s = time.monotonic() - started
        record_poll(db, now, summary.record(), summary.fetches)
    if summary.store_failures:
        raise StorageError(_store_failed(summary))
    return summary


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


class _Poller:
    """One poll's machinery: the HTTP client, the parser pool and the single store thread."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        now: datetime,
        stop: threading.Event | None,
        summary: PollSummary,
        progress: ProgressFn | None = None,
    ) -> None:
        self.db = db
        self.progress = progress
        self.feeds = settings.feeds
        self.now = now
        self._started = time.monotonic()
        self.stop = stop
        self.summary = summary

    def _clock(self) -> datetime:
        """The poll's time plus the whole seconds it has run (Retry-After has seconds)."""
        return self.now + timedelta(seconds=int(time.monotonic() - self._started))

    async def run(
        self,
        jobs: list[FeedJob],
        client: httpx.AsyncClient | None,
        parsers: ParserPool | None,
        store_thread: concurrent.futures.Executor | None = None,
    ) -> None:
        from digest.ingest.fetch import make_client

        own_client, own_parsers = client is None, parsers is None
        self.client = client or make_client(self.feeds)
        resume_collections()  # `digest poll`'s start-up is over: its code is loaded
        self.writer = StoreWriter(self.db, self.now, self.feeds.poll_interval, store_thread)
        self.parsers = parsers or ParserPool(self.feeds.workers)
        self.in_process = self.parsers.in_process(len(jobs))
        # Bodies waiting for a parser or being parsed: enough to keep every worker fed.
        self.parse_slots = asyncio.Semaphore(2 * self.parsers.workers + 2)
        self.slots = HostSlots(jobs, self.feeds.per_host, self.feeds.concurrency)
        self.driver = Driver(self.slots, self._one, self.stop)
        self.total = len(jobs)
        self.handed_in = 0  # results given to the store thread
        ticker = asyncio.create_task(self._tick()) if self.progress else None
        try:
            done = await self.driver.run()
            # Not done: left waiting at a stop, or cancelled in flight.
            self.summary.skipped += self.total - len(done)
            if self.feeds.fetch_pages and not (self.stop and self.stop.is_set()):
                if own_parsers:
                    # No more feeds: free the workers first (off the loop: shutdown waits).
                    await asyncio.to_thread(self.parsers.close)
                from digest.ingest.pages import count_pages  # lxml: only when it reads pages

                self.summary.pages = await count_pages(
                    self.db, self.client, self.feeds, self.now, self.stop
                )
        finally:
            if ticker is not None:
                ticker.cancel()
            if own_client:
                await self.client.aclose()
            # Both wait for their threads or processes: not on the event loop.
            await asyncio.to_thread(self.writer.close)
            if own_parsers:
                await asyncio.to_thread(self.parsers.close)

    async def _tick(self) -> None:
        while True:
            self._report()
            await asyncio.sleep(PROGRESS_EVERY_S)

    def _report(self) -> None:
        if self.progress is None:
            return
        s = self.summary
        waiting = tuple(sorted((site, n) for site, n in self.slots.busy.items() if n > 0))
        self.progress(PollProgress(s.feeds, self.total, s.new_posts, s.errors, waiting))

    async def _one(self, job: FeedJob) -> None:
        """One feed: fetched (a stop drops it while its host slot is held), then parsed and
        stored whatever happens (its slot is given up by then)."""
        result = await self._fetch_and_parse(job)
        pending = self.writer.store(result)
        self.handed_in += 1
        if self.handed_in == self.total:
            self.writer.last_result_in()
        stored = await asyncio.shield(pending)
        self._count(result, stored)

    async def _fetch_and_parse(self, job: FeedJob) -> FeedResult:
        # The job keeps its fetch slot (its host's and the poll's) until its body has a parser
        # slot: while the parsers are behind, fetching pauses instead of piling bodies up.
        from digest.ingest.fetch import fetch_as_configured  # loaded once there is a fetch

        try:
            fetched = await fetch_as_configured(
                self.client, job.url, self.feeds, etag=job.etag, last_modified=job.last_modified
            )
        except FetchError as e:
            self.driver.release()
            outcome = Outcome(FeedStatus.ERROR, e.status_code, e.message)
            return FeedResult(job, outcome, FetchOutcome.ERROR)
        body_hash = _body_hash(fetched.body) if fetched.body is not None else None
        done = self._classify(job, fetched, body_hash)
        if done is not None:
            self.driver.release()
            return done
        await self.parse_slots.acquire()
        self.driver.release()
        try:
            return await self._parse(job, fetched, body_hash)
        finally:
            self.parse_slots.release()

    def _classify(
        self, job: FeedJob, fetched: FetchedFeed, body_hash: str | None
    ) -> FeedResult | None:
        """The result of a fetch that needs no parse (no body, or the same body); else None."""
        code = fetched.status_code
        if fetched.body is None:
            # Retry-After counts from the answer, not from the poll's start.
            retry_after = policy.parse_retry_after(fetched.retry_after, self._clock())
            outcome = policy.outcome_for_status(code, retry_after)
            not_modified = outcome.status == FeedStatus.NOT_MODIFIED
            kind = FetchOutcome.NOT_MODIFIED if not_modified else FetchOutcome.ERROR
            return FeedResult(job, outcome, kind, fetched)
        if body_hash == job.body_hash:
            outcome = Outcome(FeedStatus.NOT_MODIFIED, code)
            slim = _without_body(fetched)
            return FeedResult(job, outcome, FetchOutcome.UNCHANGED, slim, nbytes=len(fetched.body))
        return None

    async def _parse(self, job: FeedJob, fetched: FetchedFeed, body_hash: str | None) -> FeedResult:
        assert fetched.body is not None
        code, nbytes = fetched.status_code, len(fetched.body)
        slim = _without_body(fetched)
        try:
            data = await self.parsers.parse(
                fetched.body,
                fetched.final_url,
                fetched.headers,
                self.now,
                in_process=self.in_process,
            )
        except ParseError as e:
            outcome = Outcome(FeedStatus.ERROR, code, e.message)
            return FeedResult(job, outcome, FetchOutcome.ERROR, slim, nbytes=nbytes)
        outcome = Outcome(FeedStatus.OK, code)
        return FeedResult(job, outcome, FetchOutcome.NEW, slim, data, body_hash, nbytes)

    def _count(self, result: FeedResult, stored: Stored) -> None:
        s = self.summary
        s.feeds += 1
        s.fetches[FetchOutcome.ERROR if stored.failed else result.fetch_outcome] += 1
        s.new_posts += stored.new
        s.updated_posts += stored.updated
        if stored.bug is not None:
            s.store_failures.append(f"{result.job.url} ({stored.bug})")
        if stored.failed or result.outcome.status in (FeedStatus.ERROR, FeedStatus.GONE):
            s.errors += 1
        elif result.outcome.status == FeedStatus.NOT_MODIFIED:
            s.not_modified += 1
        self._report()


def _body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _without_body(fetched: FetchedFeed) -> FetchedFeed:
    return dataclasses.replace(fetched, body=None)
