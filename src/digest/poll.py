"""Polling: sync the feeds with the OPML file, fetch the fetchable ones concurrently, store changes.

Each feed's result is stored in its own short transaction as soon as it is ready, so a poll
that dies half-way leaves a consistent database and the next poll finishes the job.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Row, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from digest import policy
from digest.config import Settings
from digest.errors import FetchError, ParseError, StorageError
from digest.fetch import fetch_feed, make_client
from digest.models import Feed, Fetch, Post
from digest.opml import read_opml
from digest.parse_rows import POST_COLUMNS, ParsedFeed, fit, parse_or_failure
from digest.storage import Database, utcnow
from digest.types import FeedSource, FetchedFeed, section_for

log = logging.getLogger(__name__)

# Below this many feeds a process pool costs more than it saves.
MIN_POOL_BATCH = 8
# Feeds stored together in one transaction at most (group commit under load).
MAX_BATCH = 100
# How long the store thread waits for more results before a small batch: a commit costs
# ~1.3 ms on SQLite, and one per feed was a third of storing a cold poll.
STORE_LINGER = 0.03
FETCH_HISTORY = timedelta(days=14)
POSTS = cast(Table, Post.__table__)
FEEDS = cast(Table, Feed.__table__)
# What the OPML file decides about a feed; what syncing reads.
SYNCED_FROM_FILE = ("title", "site_url", "category", "section")
SYNCED = (FEEDS.c.id, FEEDS.c.source_url, FEEDS.c.active, *(FEEDS.c[n] for n in SYNCED_FROM_FILE))
_UPDATE_SYNCED = (
    update(FEEDS)
    .where(FEEDS.c.id == bindparam("feed_id_"))
    .values({n: bindparam(n) for n in ("active", *SYNCED_FROM_FILE)})
)
# What choosing the feeds to fetch reads (the policy's FeedState, and a Job's fields).
JOB_STATE = tuple(
    FEEDS.c[n]
    for n in (
        "id",
        "url",
        "etag",
        "last_modified",
        "body_hash",
        "status",
        "error_count",
        "failing_since",
        "due_at",
        "next_fetch_at",
    )
)
PRUNE_EVERY = timedelta(days=1)


@dataclass
class SyncResult:
    """What syncing the feeds table with the OPML file changed."""

    added: int = 0
    reactivated: int = 0
    deactivated: int = 0
    changed: int = 0


@dataclass
class PollSummary:
    """What one poll did, for the CLI and the daemon's log."""

    feeds: int = 0
    new_posts: int = 0
    updated_posts: int = 0
    not_modified: int = 0
    errors: int = 0
    skipped: int = 0  # active feeds not fetched: gone, held back, not due, or stopped
    elapsed_s: float = 0.0
    sync: SyncResult = field(default_factory=SyncResult)

    def as_json(self) -> dict[str, int]:
        return {
            "feeds": self.feeds,
            "new_posts": self.new_posts,
            "updated_posts": self.updated_posts,
            "not_modified": self.not_modified,
            "errors": self.errors,
        }

    def line(self) -> str:
        return (
            f"polled {self.feeds:,} feeds: {self.new_posts:,} new posts, "
            f"{self.updated_posts:,} updated, {self.not_modified:,} not modified, "
            f"{self.errors:,} errors in {self.elapsed_s:.1f} s"
        )


@dataclass(frozen=True)
class Job:
    """A snapshot of what fetching one feed needs, taken before the poll starts."""

    feed_id: int
    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None


@dataclass(frozen=True)
class FeedResult:
    """One feed's fetch, classified and (when its body changed) parsed, ready to store."""

    job: Job
    outcome: policy.Outcome
    fetch_outcome: str  # new | not_modified | unchanged | error (Fetch.outcome)
    fetched: FetchedFeed | None = None
    data: ParsedFeed | None = None
    body_hash: str | None = None
    nbytes: int = 0  # size of the body; the body itself is dropped once hashed or parsed


# --- syncing with the OPML file ----------------------------------------------------------


def sync_feeds(db: Database, sources: Iterable[FeedSource], now: datetime) -> SyncResult:
    """Make the feeds table follow the OPML file (matched on the URL the file names).

    New URLs are added; feeds missing from the file become inactive, their posts kept; a feed
    back in the file is active again; title, site, category and section follow the file.
    Core statements (one SELECT, one executemany each for inserts and updates): thousands of
    ORM objects cost seconds and megabytes on every poll.
    """
    result = SyncResult()
    with db.session() as s:
        conn = s.connection()
        feeds = {f.source_url: f for f in conn.execute(select(*SYNCED))}
        seen: set[str] = set()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for src in sources:
            url = src.url.strip()
            if url in seen or len(url) > 2048:
                continue
            seen.add(url)
            feed = feeds.get(url)
            if feed is None:
                inserts.append(_new_feed(src, url, now))
                result.added += 1
                continue
            wanted = _follow_source(feed, src)
            changed = wanted != _synced_values(feed)
            result.reactivated += not feed.active
            result.changed += changed
            if changed or not feed.active:
                updates.append({**wanted, "active": True, "feed_id_": feed.id})
        for url, feed in feeds.items():
            if url not in seen and feed.active:
                updates.append({**_synced_values(feed), "active": False, "feed_id_": feed.id})
                result.deactivated += 1
        if inserts:
            conn.execute(insert(FEEDS), inserts)
        if updates:
            conn.execute(_UPDATE_SYNCED, updates)
    return result


def _new_feed(src: FeedSource, url: str, now: datetime) -> dict[str, Any]:
    return {
        "source_url": url,
        "url": url,
        "title": fit(src.title, 512),
        "site_url": fit(src.site_url, 2048, cut=False),
        "category": fit(src.category, 512),
        "section": section_for(src.category),
        "active": True,
        "added_at": now,
        "status": policy.NEW,
        "error_count": 0,
        "polled_once": False,
    }


def _synced_values(feed: Row[Any]) -> dict[str, Any]:
    return {name: getattr(feed, name) for name in SYNCED_FROM_FILE}


def _follow_source(feed: Row[Any], src: FeedSource) -> dict[str, Any]:
    """The values the file gives the feed (a file without a title or site keeps the feed's)."""
    return {
        "title": fit(src.title, 512) if src.title else feed.title,
        "site_url": fit(src.site_url, 2048, cut=False) if src.site_url else feed.site_url,
        "category": fit(src.category, 512),
        "section": section_for(src.category),
    }


# --- selecting and fetching --------------------------------------------------------------


def select_jobs(db: Database, now: datetime, due_only: bool) -> tuple[list[Job], int]:
    """The active feeds that may be fetched now, longest waiting first; and how many may not."""
    with db.session() as s:
        rows = s.connection().execute(select(*JOB_STATE).where(FEEDS.c.active.is_(True)))
        feeds = list(rows)
    fetchable = sorted(
        (f for f in feeds if policy.is_fetchable(f, now, due_only)), key=policy.fetch_order
    )
    jobs = [Job(f.id, f.url, f.etag, f.last_modified, f.body_hash) for f in fetchable]
    return jobs, len(feeds) - len(jobs)


def poll_feeds(
    db: Database,
    settings: Settings,
    *,
    now: datetime | None = None,
    due_only: bool = False,
    stop: threading.Event | None = None,
    client: httpx.AsyncClient | None = None,
    sources: list[FeedSource] | None = None,
) -> PollSummary:
    """Sync with the OPML file, then fetch every fetchable feed once and store the results.

    ``due_only`` (the daemon) fetches only feeds whose regular time has come. When ``stop``
    is set, no new fetch starts; fetches in flight are dropped unsaved, stores in flight finish.
    Raises ConfigError for an unreadable OPML file and StorageError when the database fails.
    """
    started = time.monotonic()
    now = now or utcnow()
    if sources is None:
        sources = read_opml(settings.feeds.opml)
    summary = PollSummary(sync=sync_feeds(db, sources, now))
    jobs, summary.skipped = select_jobs(db, now, due_only)
    if jobs and not (stop and stop.is_set()):
        poller = _Poller(db, settings, now, stop, summary)
        asyncio.run(poller.run(jobs, client))
    elif jobs:
        summary.skipped += len(jobs)
    prune_fetches(db, now)
    summary.elapsed_s = time.monotonic() - started
    return summary


class _Poller:
    """One poll's machinery: the HTTP client, the parser pool and the single store thread."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        now: datetime,
        stop: threading.Event | None,
        summary: PollSummary,
    ) -> None:
        self.db = db
        self.feeds = settings.feeds
        self.now = now
        self._started = time.monotonic()
        self.stop = stop
        self.summary = summary
        self.storing: set[int] = set()
        self.released: set[int] = set()

    def _clock(self) -> datetime:
        """The poll's time plus the whole seconds it has run (Retry-After has seconds)."""
        return self.now + timedelta(seconds=int(time.monotonic() - self._started))

    async def run(self, jobs: list[Job], client: httpx.AsyncClient | None) -> None:
        own_client = client is None
        self.client = client or make_client(self.feeds)
        self.writer = _Writer(self.db, self.now, self.feeds.poll_interval)
        self.parsers = _Parsers(self.feeds.workers, len(jobs))
        # Bodies waiting for a parser or being parsed: enough to keep every worker fed.
        self.parse_slots = asyncio.Semaphore(2 * self.parsers.workers + 2)
        self.dispatcher = _Dispatcher(jobs, self.feeds.per_host, self.feeds.concurrency)
        self.results: list[BaseException | None] = []
        self.live: dict[asyncio.Task[None], Job] = {}
        self.idle = asyncio.Event()
        watcher = asyncio.create_task(self._watch_stop())
        try:
            self._start_more()
            await self.idle.wait()
        finally:
            watcher.cancel()
            if own_client:
                await self.client.aclose()
            self.writer.close()
            self.parsers.close()
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in self.results)
        self.summary.skipped += cancelled + self.dispatcher.waiting
        failures = [r for r in self.results if isinstance(r, Exception)]
        if failures:
            raise failures[0]

    def _start_more(self) -> None:
        """Start the jobs that have room now; note when nothing is left to run."""
        for job in self.dispatcher.take():
            task = asyncio.create_task(self._one(job))
            self.live[task] = job
            task.add_done_callback(self._finished)
        if not self.live:
            self.idle.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self.live.pop(task)
        if job.feed_id not in self.released:  # cancelled before it let its slot go
            self._release(job)
        self.results.append(task.exception() if not task.cancelled() else asyncio.CancelledError())
        self._start_more()

    def _release(self, job: Job) -> None:
        """The job's fetch is over: its host slot goes to the next job waiting."""
        self.released.add(job.feed_id)
        self.dispatcher.release(job.url)
        self._start_more()

    async def _watch_stop(self) -> None:
        if self.stop is None:
            return
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        log.info("stop requested: dropping fetches in flight, finishing stores")
        self.dispatcher.close()
        for task, job in list(self.live.items()):
            if job.feed_id not in self.storing:
                task.cancel()

    async def _one(self, job: Job) -> None:
        result = await self._fetch_and_parse(job)
        # From here on the result is stored whatever happens: a stop no longer cancels it.
        self.storing.add(job.feed_id)
        new, updated = await asyncio.shield(self.writer.store(result))
        self._count(result, new, updated)

    async def _fetch_and_parse(self, job: Job) -> FeedResult:
        # The job keeps its fetch slot (its host's and the poll's) until its body has a parser
        # slot: while the parsers are behind, fetching pauses instead of piling bodies up.
        try:
            fetched = await fetch_feed(
                self.client,
                job.url,
                etag=job.etag,
                last_modified=job.last_modified,
                timeout=self.feeds.timeout.total_seconds(),
                max_bytes=self.feeds.max_bytes,
                user_agent=self.feeds.user_agent,
                now=self._clock(),  # Retry-After counts from the answer, not the poll's start
            )
        except FetchError as e:
            self._release(job)
            outcome = policy.Outcome(policy.ERROR, e.status_code, e.message)
            return FeedResult(job, outcome, "error")
        body_hash = _body_hash(fetched.body) if fetched.body is not None else None
        done = self._classify(job, fetched, body_hash)
        if done is not None:
            self._release(job)
            return done
        await self.parse_slots.acquire()
        self._release(job)
        try:
            return await self._parse(job, fetched, body_hash)
        finally:
            self.parse_slots.release()

    def _classify(self, job: Job, fetched: FetchedFeed, body_hash: str | None) -> FeedResult | None:
        """The result of a fetch that needs no parse (no body, or the same body); else None."""
        code = fetched.status_code
        if fetched.body is None:
            outcome = policy.outcome_for_status(code, fetched.retry_after)
            kind = "not_modified" if outcome.status == policy.NOT_MODIFIED else "error"
            return FeedResult(job, outcome, kind, fetched)
        if body_hash == job.body_hash:
            outcome = policy.Outcome(policy.NOT_MODIFIED, code)
            slim = _without_body(fetched)
            return FeedResult(job, outcome, "unchanged", slim, nbytes=len(fetched.body))
        return None

    async def _parse(self, job: Job, fetched: FetchedFeed, body_hash: str | None) -> FeedResult:
        assert fetched.body is not None
        code, nbytes = fetched.status_code, len(fetched.body)
        slim = _without_body(fetched)
        try:
            data = await self.parsers.parse(
                fetched.body, fetched.final_url, fetched.headers, self.now
            )
        except ParseError as e:
            outcome = policy.Outcome(policy.ERROR, code, e.message)
            return FeedResult(job, outcome, "error", slim, nbytes=nbytes)
        outcome = policy.Outcome(policy.OK, code)
        return FeedResult(job, outcome, "new", slim, data, body_hash, nbytes)

    def _count(self, result: FeedResult, new: int, updated: int) -> None:
        s = self.summary
        s.feeds += 1
        s.new_posts += new
        s.updated_posts += updated
        if result.outcome.status == policy.NOT_MODIFIED:
            s.not_modified += 1
        elif result.outcome.status in (policy.ERROR, policy.GONE):
            s.errors += 1


class _Dispatcher:
    """Hands out jobs as their hosts have room: ``per_host`` per host, ``total`` in all.

    Jobs start only when they can run, so a poll of 5,000 feeds holds a few dozen tasks
    rather than 5,000 waiting on semaphores. Hosts take turns (round robin); each host's
    jobs keep their order (longest waiting first).
    """

    def __init__(self, jobs: Iterable[Job], per_host: int, total: int) -> None:
        self.per_host, self.total = per_host, total
        self.queues: dict[str, collections.deque[Job]] = {}
        for job in jobs:
            self.queues.setdefault(host_of(job.url), collections.deque()).append(job)
        # Hosts with jobs waiting and a free slot, in turn order.
        self.ready: dict[str, None] = dict.fromkeys(self.queues)
        self.busy: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.closed = False

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def take(self) -> Iterator[Job]:
        """The jobs that may start now (each one counts as running from here on)."""
        while self.ready and self.running < self.total and not self.closed:
            host = next(iter(self.ready))
            queue = self.queues[host]
            job = queue.popleft()
            self.busy[host] += 1
            self.running += 1
            del self.ready[host]
            if not queue:
                del self.queues[host]
            elif self.busy[host] < self.per_host:
                self.ready[host] = None  # to the back: the other hosts' turn first
            yield job

    def release(self, url: str) -> None:
        host = host_of(url)
        self.busy[host] -= 1
        self.running -= 1
        if host in self.queues and host not in self.ready:
            self.ready[host] = None

    def close(self) -> None:
        """Start nothing more (a stop)."""
        self.closed = True


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _without_body(fetched: FetchedFeed) -> FetchedFeed:
    return dataclasses.replace(fetched, body=None)


class _Writer:
    """Stores results from one thread, committing what has queued up together (group commit).

    Each feed's result is whole inside one transaction, so a crash loses whole feeds only, and
    the event loop never waits on the database. SQLite takes one writer at a time anyway.
    """

    def __init__(self, db: Database, now: datetime, poll_interval: timedelta) -> None:
        self.db, self.now, self.poll_interval = db, now, poll_interval
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="digest-store")
        self._lock = threading.Lock()
        self._pending: list[tuple[FeedResult, asyncio.Future[tuple[int, int]]]] = []
        self._scheduled = False

    def store(self, result: FeedResult) -> asyncio.Future[tuple[int, int]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, int]] = loop.create_future()
        with self._lock:
            self._pending.append((result, future))
            if not self._scheduled:
                self._scheduled = True
                self._executor.submit(self._flush, loop)
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._pending) < MAX_BATCH // 4:
            time.sleep(STORE_LINGER)
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._pending:
                self._executor.submit(self._flush, loop)
            else:
                self._scheduled = False
        results = [r for r, _f in batch]
        outcomes: list[tuple[int, int] | BaseException]
        try:
            outcomes = list(store_results(self.db, results, self.now, self.poll_interval))
        except StorageError:
            # One feed's values broke the batch: store each on its own so it costs that feed only.
            outcomes = []
            for result in results:
                try:
                    outcomes.append(store_result(self.db, result, self.now, self.poll_interval))
                except StorageError as e:
                    outcomes.append(e)
        for (_r, future), outcome in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, outcome)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _settle(
    future: asyncio.Future[tuple[int, int]], outcome: tuple[int, int] | BaseException
) -> None:
    if future.cancelled():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class _Parsers:
    """Parses bodies in a process pool (feedparser is CPU-bound), or in a thread for few feeds."""

    def __init__(self, workers: int, batch: int) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.in_process = self.workers <= 1 or batch < MIN_POOL_BATCH
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def parse(
        self, body: bytes, url: str, headers: Mapping[str, str], now: datetime
    ) -> ParsedFeed:
        """The parsed feed; raises ParseError for a body that is not a feed we can read."""
        call = functools.partial(parse_or_failure, body, url, dict(headers), now)
        if self.in_process:
            result = await asyncio.to_thread(call)
        else:
            try:
                result = await asyncio.get_running_loop().run_in_executor(self._get_pool(), call)
            except concurrent.futures.process.BrokenProcessPool:
                # A worker died (out of memory on a hostile body?): parse the rest here.
                if not self.in_process:
                    log.warning("a parser process died; parsing in this process from now on")
                    self.in_process = True
                result = await asyncio.to_thread(call)
        if isinstance(result, str):
            raise ParseError(url, result)
        return result

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: never fork this (threaded) process; workers start from a clean one.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["digest.parse_rows", "digest.parse"])
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


# --- storing -----------------------------------------------------------------------------

_KEY, _CANONICAL, _HASH = (
    POST_COLUMNS.index(c) for c in ("key", "canonical_url", "content_hash")
)
# What storing a fetch may change in a feed: all of them are written for every feed, so
# that one executemany updates a whole batch.
FEED_WRITES = (
    "status",
    "last_status_code",
    "last_error",
    "error_count",
    "failing_since",
    "next_fetch_at",
    "due_at",
    "last_fetched_at",
    "last_success_at",
    "url",
    "etag",
    "last_modified",
    "body_hash",
    "polled_once",
    "title",
    "site_url",
    "last_warning",
)
# What storing reads of a feed: the policy's FeedState and everything it may write.
FEED_STATE = (FEEDS.c.id, *(FEEDS.c[name] for name in FEED_WRITES))
FETCHES = cast(Table, Fetch.__table__)
_UPDATE_FEED = (
    update(FEEDS)
    .where(FEEDS.c.id == bindparam("feed_id_"))
    .values({name: bindparam(name) for name in FEED_WRITES})
)
_UPDATE_POST = (
    update(POSTS)
    .where(POSTS.c.id == bindparam("post_id_"))
    .values({name: bindparam(name) for name in POST_COLUMNS})
)
_REKEY_POST = update(POSTS).where(POSTS.c.id == bindparam("post_id_")).values(key=bindparam("key"))


def store_results(
    db: Database, results: list[FeedResult], now: datetime, poll_interval: timedelta
) -> list[tuple[int, int]]:
    """Store several feeds' fetches in one transaction: (new, updated) posts for each.

    Core statements, not the ORM: one SELECT of the feeds' state, one executemany for their
    updates and one for the Fetch rows, whatever the batch size.
    """
    with db.session() as s:
        conn = s.connection()
        ids = [r.job.feed_id for r in results]
        state = select(*FEED_STATE).where(FEEDS.c.id.in_(ids))
        feeds = {f.id: f for f in conn.execute(state)}
        feed_rows: list[dict[str, Any]] = []
        fetch_rows: list[dict[str, Any]] = []
        writes = PostWrites()
        counts: list[tuple[int, int]] = []
        for result in results:
            feed = feeds.get(result.job.feed_id)
            if feed is None:  # deleted while we fetched
                counts.append((0, 0))
                continue
            values, new, updated = _store(conn, feed, result, now, poll_interval, writes)
            feed_rows.append(values)
            fetch_rows.append(_fetch_row(feed.id, feed.url, result, now, new, updated))
            counts.append((new, updated))
        writes.execute(conn)
        if feed_rows:
            conn.execute(_UPDATE_FEED, feed_rows)
            conn.execute(insert(FETCHES), fetch_rows)
        return counts


def store_result(
    db: Database, result: FeedResult, now: datetime, poll_interval: timedelta
) -> tuple[int, int]:
    """Store one feed's fetch in one transaction: health, validators, posts, a Fetch row.

    Returns (new posts, updated posts). A failure to store the posts is recorded as the
    feed's error; a database that fails even for that raises StorageError.
    """
    try:
        return store_results(db, [result], now, poll_interval)[0]
    except StorageError as e:
        log.warning("feed %s: %s", result.job.url, e)
        failed = FeedResult(
            result.job, policy.Outcome(policy.ERROR, None, f"cannot store: {e}"), "error"
        )
        return store_results(db, [failed], now, poll_interval)[0]


def _store(
    conn: Connection,
    feed: Row[Any],
    result: FeedResult,
    now: datetime,
    poll_interval: timedelta,
    writes: PostWrites,
) -> tuple[dict[str, Any], int, int]:
    """The feed's new values after ``result`` (its posts planned into ``writes``), new, updated."""
    fetched, outcome = result.fetched, result.outcome
    health = policy.next_health(feed, outcome, now, poll_interval)
    values: dict[str, Any] = {name: getattr(feed, name) for name in FEED_WRITES}
    values.update(vars(health), feed_id_=feed.id, last_fetched_at=now)
    moved = fetched.permanent_redirect if fetched is not None else None
    if moved and moved != feed.url and len(moved) <= 2048:
        log.warning("feed moved permanently: %s -> %s", feed.url, moved)
        values["url"] = moved
    if outcome.status in (policy.OK, policy.NOT_MODIFIED):
        values["last_success_at"] = now
        if fetched is not None:
            values.update(_validators(feed, fetched))
    new = updated = 0
    data = result.data
    if data is not None:
        new, updated = merge_posts(conn, feed.id, data.rows, now, not feed.polled_once, writes)
        values["body_hash"] = result.body_hash
        values["polled_once"] = True
        values["title"] = feed.title or data.title
        values["site_url"] = feed.site_url or data.site_url
        values["last_warning"] = data.warning
    if outcome.status != policy.OK and outcome.status != policy.NOT_MODIFIED:
        log.info("feed %s: %s", feed.url, outcome.error)
    return values, new, updated


def _validators(feed: Row[Any], fetched: FetchedFeed) -> dict[str, str | None]:
    etag, modified = (
        fit(fetched.etag, 1024, cut=False),
        fit(fetched.last_modified, 128, cut=False),
    )
    if fetched.not_modified:
        # A 304 may repeat or renew the validators; it never takes them away.
        return {"etag": etag or feed.etag, "last_modified": modified or feed.last_modified}
    # A 200's validators describe the body we just got, absent ones included.
    return {"etag": etag, "last_modified": modified}


def _fetch_row(
    feed_id: int, feed_url: str, result: FeedResult, now: datetime, new: int, updated: int
) -> dict[str, Any]:
    fetched, outcome = result.fetched, result.outcome
    return {
        "feed_id": feed_id,
        "at": now,
        "url": (fetched.final_url if fetched else feed_url)[:2048],
        "status_code": outcome.status_code,
        "outcome": result.fetch_outcome,
        "new_posts": new,
        "updated_posts": updated,
        "bytes": result.nbytes,
        "elapsed_ms": fetched.elapsed_ms if fetched else 0,
        "error": outcome.error,
    }


@dataclass
class PostWrites:
    """The post rows a batch of feeds writes: one executemany each, whatever the batch size."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    rekeys: list[dict[str, Any]] = field(default_factory=list)

    def execute(self, conn: Connection) -> None:
        if self.inserts:
            conn.execute(insert(POSTS), self.inserts)
        if self.updates:
            conn.execute(_UPDATE_POST, self.updates)
        if self.rekeys:
            conn.execute(_REKEY_POST, self.rekeys)


def merge_posts(
    conn: Connection,
    feed_id: int,
    rows: Iterable[tuple[Any, ...]],
    now: datetime,
    first_poll: bool,
    writes: PostWrites,
) -> tuple[int, int]:
    """Plan new posts, changed ones and ones whose GUID changed into ``writes``: (new, updated).

    ``rows`` are POST_COLUMNS values (see post_row).
    """
    rows = list(rows)
    # A feed's posts are stored with its first successful poll, in one transaction.
    stored = {} if first_poll else _stored_posts(conn, feed_id)
    steps = policy.plan_merge(((r[_KEY], r[_CANONICAL], r[_HASH]) for r in rows), stored)
    new = updated = 0
    for row, step in zip(rows, steps, strict=True):
        if step.action is policy.Merge.NEW:
            values = dict(zip(POST_COLUMNS, row, strict=True))
            values.update(feed_id=feed_id, first_seen=now, from_first_poll=first_poll)
            writes.inserts.append(values)
            new += 1
        elif step.existing is not None and step.changed:
            values = dict(zip(POST_COLUMNS, row, strict=True))
            writes.updates.append({**values, "post_id_": step.existing.id})
            updated += 1
        elif step.action is policy.Merge.REKEY and step.existing is not None:
            writes.rekeys.append({"post_id_": step.existing.id, "key": row[_KEY]})
    return new, updated


def _stored_posts(conn: Connection, feed_id: int) -> dict[str, policy.Existing]:
    stored_rows = conn.execute(
        select(POSTS.c.id, POSTS.c.key, POSTS.c.canonical_url, POSTS.c.content_hash).where(
            POSTS.c.feed_id == feed_id
        )
    )
    # Links compared canonical: a blog moving to https (guids and links with it) keeps its posts.
    return {
        r.key: policy.Existing(r.id, r.key, r.canonical_url, r.content_hash) for r in stored_rows
    }


def prune_fetches(db: Database, now: datetime) -> None:
    """Drop Fetch rows older than two weeks, at most once a day."""
    last = db.get_meta("fetches_pruned_at")
    if last is not None and now - datetime.fromisoformat(last) < PRUNE_EVERY:
        return
    with db.session() as s:
        s.execute(delete(Fetch).where(Fetch.at < now - FETCH_HISTORY))
    db.set_meta("fetches_pruned_at", now.isoformat())


def post_counts(s: Session) -> dict[int, int]:
    """Posts stored per feed id."""
    rows = s.execute(select(Post.feed_id, func.count()).group_by(Post.feed_id))
    return {feed_id: count for feed_id, count in rows}


# --- reporting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedHealth:
    """One feed as `digest feeds` shows it."""

    id: int
    url: str
    source_url: str
    title: str | None
    section: str
    active: bool
    status: str
    health: str  # the status in words, e.g. "backing off until 2026-11-22 15:00 UTC"
    last_status_code: int | None
    error: str | None
    warning: str | None  # the parser's complaint about the last body it could read
    posts: int
    last_success_at: datetime | None
    last_fetched_at: datetime | None
    next_fetch_at: datetime | None
    failing_since: datetime | None
    long_failing: bool

    @property
    def failing(self) -> bool:
        return self.status in (policy.ERROR, policy.BACKOFF, policy.GONE)

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "url": self.url,
            "source_url": self.source_url,
            "title": self.title,
            "section": self.section,
            "active": self.active,
            "status": self.status,
            "health": self.health,
            "last_status_code": self.last_status_code,
            "error": self.error,
            "warning": self.warning,
            "posts": self.posts,
            "last_success": iso(self.last_success_at),
            "last_fetched": iso(self.last_fetched_at),
            "next_fetch_at": iso(self.next_fetch_at),
            "failing_since": iso(self.failing_since),
            "failing_7_days": self.long_failing,
        }


def list_feeds(db: Database, now: datetime | None = None) -> list[FeedHealth]:
    """Every feed with its health and post count, active ones first, by section and title."""
    now = now or utcnow()
    with db.session() as s:
        counts = post_counts(s)
        feeds = list(s.scalars(select(Feed)))
        rows = [_health_row(f, counts.get(f.id, 0), now) for f in feeds]
    return sorted(rows, key=lambda r: (not r.active, r.section, (r.title or r.url).lower(), r.id))


def _health_row(feed: Feed, posts: int, now: datetime) -> FeedHealth:
    failing = feed.status in (policy.ERROR, policy.BACKOFF, policy.GONE)
    return FeedHealth(
        id=feed.id,
        url=feed.url,
        source_url=feed.source_url,
        title=feed.title,
        section=feed.section,
        active=feed.active,
        status=feed.status,
        health=describe_health(feed, now),
        last_status_code=feed.last_status_code,
        error=feed.last_error if failing else None,
        warning=feed.last_warning,
        posts=posts,
        last_success_at=feed.last_success_at,
        last_fetched_at=feed.last_fetched_at,
        next_fetch_at=feed.next_fetch_at,
        failing_since=feed.failing_since,
        long_failing=policy.is_long_failing(feed, now),
    )


def describe_health(feed: Feed, now: datetime) -> str:
    """The feed's health in a few words."""
    held = feed.next_fetch_at if feed.next_fetch_at and feed.next_fetch_at > now else None
    if feed.status == policy.GONE:
        text = f"gone ({feed.last_status_code or 410})"
    elif feed.status == policy.BACKOFF:
        text = f"backing off until {_when(held or now)}: {feed.last_error}"
    elif feed.status == policy.ERROR:
        text = f"error: {feed.last_error}"
        if held:
            text += f" (retry after {_when(held)})"
    elif feed.status == policy.NOT_MODIFIED:
        text = "not modified"
    elif feed.status == policy.OK:
        text = "ok"
    else:
        text = "not polled yet"
    if not feed.active:
        text = "inactive (not in the OPML file); " + text
    since = policy.failing_for(feed, now)
    if since is not None and since >= policy.LONG_FAILING:
        text += f" [failing for {since.days} days]"
    return text


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")
