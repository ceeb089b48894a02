"""One poll's fetching: the HTTP client, the parser pool and the store thread, on one event
loop. The database may still be opening when the first requests go out (ingest/early.py):
results wait for it before they are stored. No SQLAlchemy at import: the store writer loads
with the database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from digest.config import Settings
from digest.errors import FetchError, ParseError
from digest.ingest import policy
from digest.ingest.parsers import ParserPool
from digest.ingest.slots import Driver, HostSlots
from digest.ingest.summary import PollProgress, PollSummary, ProgressFn
from digest.startup import resume_collections
from digest.types import FeedJob, FeedResult, FeedStatus, FetchedFeed, FetchOutcome, Outcome

if TYPE_CHECKING:  # httpx and the fetch code load when there is something to fetch
    import httpx

    from digest.ingest.feedstore import Stored
    from digest.ingest.writer import StoreWriter
    from digest.storage import Database

# How often the progress line is refreshed while nothing finishes (a slow feed).
PROGRESS_EVERY_S = 0.5


@runtime_checkable
class LateDatabase(Protocol):
    """A database opened in another thread once start() is called (ingest/early.py)."""

    @property
    def future(self) -> concurrent.futures.Future[Database]: ...

    def start(self) -> None: ...


class Poller:
    """One poll's machinery: the HTTP client, the parser pool and the single store thread.

    ``db``: the database, or one opened in another thread (LateDatabase), started once the
    first requests are on their way: importing the database layer is CPU under the GIL, and
    on the way there it slowed the import of httpx as much as it took (a warm poll of 500
    feeds sent its first request 100-140 ms after its fetching began, and was no faster).
    Results wait for it; if it fails, the poll starts no more requests and run() raises."""

    def __init__(
        self,
        db: Database | LateDatabase,
        settings: Settings,
        now: datetime,
        stop: threading.Event | None,
        summary: PollSummary,
        progress: ProgressFn | None = None,
    ) -> None:
        self._database = db
        self._late: LateDatabase | None = None
        self._opening_soon = False
        self._opened: asyncio.Future[Database] | None = None
        self.writer: StoreWriter | None = None
        self._store_thread: concurrent.futures.Executor | None = None
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
        self._store_thread = store_thread
        if isinstance(self._database, LateDatabase):
            self._late = self._database
            self._opened = asyncio.wrap_future(self._late.future)
            self._opened.add_done_callback(self._stop_unless_opened)
        else:
            self._open_writer(self._database)
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

                db = await self._db()
                self.summary.pages = await count_pages(
                    db, self.client, self.feeds, self.now, self.stop
                )
        finally:
            if ticker is not None:
                ticker.cancel()
            if own_client:
                await self.client.aclose()
            # Both wait for their threads or processes: not on the event loop.
            if self.writer is not None:
                await asyncio.to_thread(self.writer.close)
            if own_parsers:
                await asyncio.to_thread(self.parsers.close)

    def _open_writer(self, db: Database) -> StoreWriter:
        from digest.ingest.writer import StoreWriter  # loaded with the database

        resume_collections()  # `digest poll`'s start-up is over: its code is loaded
        self.writer = StoreWriter(db, self.now, self.feeds.poll_interval, self._store_thread)
        return self.writer

    async def _db(self) -> Database:
        if self._opened is None:
            assert not isinstance(self._database, LateDatabase)
            return self._database
        self._start_opening()
        return await asyncio.shield(self._opened)

    def _start_opening(self) -> None:
        if self._late is not None:
            self._late.start()

    async def _store_writer(self) -> StoreWriter:
        """The writer, made once the database is open (results wait for it)."""
        if self.writer is None:
            db = await self._db()
            if self.writer is None:
                self._open_writer(db)
        assert self.writer is not None
        return self.writer

    def _stop_unless_opened(self, opened: asyncio.Future[Database]) -> None:
        """The database could not be opened: start no more requests (run() raises why)."""
        if (opened.cancelled() or opened.exception() is not None) and self.stop is not None:
            self.stop.set()

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
        writer = await self._store_writer()
        pending = writer.store(result)
        self.handed_in += 1
        if self.handed_in == self.total:
            writer.last_result_in()
        stored = await asyncio.shield(pending)
        self._count(result, stored)

    async def _fetch_and_parse(self, job: FeedJob) -> FeedResult:
        # The job keeps its fetch slot (its host's and the poll's) until its body has a parser
        # slot: while the parsers are behind, fetching pauses instead of piling bodies up.
        from digest.ingest.fetch import fetch_as_configured  # loaded once there is a fetch

        if self._late is not None and self.writer is None and not self._opening_soon:
            # Run after the first step of every request the driver started with this one:
            # their connections are under way when the database's thread starts.
            self._opening_soon = True
            asyncio.get_running_loop().call_soon(self._start_opening)
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
        if self._late is not None:
            # No parse (its imports: the parser, multiprocessing for the pool) while the
            # database's thread imports: two threads importing at once may meet a module the
            # other has half loaded (Python hands over a partial module rather than deadlock).
            # A forced poll of a recovered feed was once stored as an error that way.
            await self._db()
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
