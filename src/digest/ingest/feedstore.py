"""Poll state in the database: which feeds a poll fetches, and storing what came back
(feed health, validators, posts, Fetch rows) in short transactions.

Each feed's result is whole inside one transaction, so a poll that dies half-way leaves a
consistent database and the next poll finishes the job.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Column, Connection, Row, bindparam, insert, or_, select, update

from digest import columns as width
from digest import metakeys
from digest.columns import fit
from digest.errors import StorageError
from digest.ingest import policy, tally
from digest.storage import Database, in_pieces
from digest.tables import FEEDS, FETCHES, POSTS
from digest.types import (
    FeedJob,
    FeedResult,
    FeedStatus,
    FetchedFeed,
    FetchOutcome,
    Outcome,
    PostRow,
)

log = logging.getLogger(__name__)

# What choosing the feeds to fetch reads (the policy's FeedState, and a FeedJob's fields).
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
# Fetch rows deleted per transaction by the daily prune (a day of 2,000 feeds polled every
# minute is 2.9M rows). 200,000 rows on SQLite at load 15 on 2 cores: one transaction held
# the write lock 17.7 s; batches of 5,000 took 9.4 s in all, the longest 0.51 s (of 1,000:
# 25 s, 0.42 s: each commit has its cost).
FETCH_PRUNE_BATCH = 5000
# The schedule's jitter for every feed stored: one generator, not a new one seeded from
# os.urandom for each feed (11.5 us a feed; 5 % of the soak daemon's samples, py-spy).
_JITTER = random.Random()


class Stored(NamedTuple):
    """What storing one feed's result came to."""

    new: int = 0  # posts added
    updated: int = 0  # posts changed
    failed: bool = False  # the result could not be stored: recorded as the feed's error
    # Set when what failed was a bug met on the feed's values, not the database refusing them:
    # the feed is set aside all the same, and the poll ends with this error (see poll_feeds).
    bug: str | None = None


# --- selecting ---------------------------------------------------------------------------


def select_jobs(
    db: Database, now: datetime, due_only: bool, force: bool = False
) -> tuple[list[FeedJob], policy.Held]:
    """The active feeds that may be fetched now, longest waiting first; and those that may not
    (``force``: our own backoff lifted, see policy.hold). With ``due_only`` (the daemon's
    rounds) the feeds not due yet are not read, nor counted as held: at a round every 6 s
    they are most of the list, and reading and judging all of the soak's 2,000 took 19 ms of
    each round (py-spy of bench/rounds.py --feeds 2000 --tick 6); those held back for a
    reason a summary names (gone, backing off, asked to wait) still are."""
    query = select(*JOB_STATE).where(FEEDS.c.active.is_(True))
    if due_only and not force:
        query = query.where(
            or_(
                FEEDS.c.due_at.is_(None),
                FEEDS.c.due_at <= now,
                FEEDS.c.status == FeedStatus.GONE,
                FEEDS.c.next_fetch_at > now,
            )
        )
    with db.begin() as conn:
        feeds = list(conn.execute(query))
    fetchable = sorted(
        (f for f in feeds if policy.hold(f, now, due_only, force) is None), key=policy.fetch_order
    )
    jobs = [FeedJob(f.id, f.url, f.etag, f.last_modified, f.body_hash) for f in fetchable]
    return jobs, policy.held(feeds, now, due_only, force)


# --- storing -----------------------------------------------------------------------------

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
_UPDATE_FEED = (
    update(FEEDS)
    .where(FEEDS.c.id == bindparam("feed_id_"))
    .values({name: bindparam(name) for name in FEED_WRITES})
)
_UPDATE_POST = (
    update(POSTS)
    .where(POSTS.c.id == bindparam("post_id_"))
    .values({name: bindparam(name) for name in PostRow._fields})
)
_REKEY_POST = update(POSTS).where(POSTS.c.id == bindparam("post_id_")).values(key=bindparam("key"))


def store_results(
    db: Database, results: list[FeedResult], now: datetime, poll_interval: timedelta
) -> list[Stored]:
    """Store several feeds' fetches in one transaction: new and updated posts for each.

    Core statements, not the ORM: one SELECT of the feeds' state, one executemany for their
    updates and one for the Fetch rows, whatever the batch size.
    """
    with db.begin() as conn:
        ids = [r.job.feed_id for r in results]
        state = select(*FEED_STATE).where(FEEDS.c.id.in_(ids))
        feeds = {f.id: f for f in conn.execute(state)}
        feed_rows: list[dict[str, Any]] = []
        fetch_rows: list[dict[str, Any]] = []
        writes = PostWrites()
        counts: list[Stored] = []
        for result in results:
            feed = feeds.get(result.job.feed_id)
            if feed is None:  # deleted while we fetched
                counts.append(Stored())
                continue
            values, new, updated = _store(conn, feed, result, now, poll_interval, writes)
            feed_rows.append(values)
            fetch_rows.append(_fetch_row(feed.id, feed.url, result, now, new, updated))
            counts.append(Stored(new, updated))
        writes.execute(conn)
        if feed_rows:
            conn.execute(_UPDATE_FEED, feed_rows)
            conn.execute(insert(FETCHES), fetch_rows)
        return counts


def store_result(
    db: Database, result: FeedResult, now: datetime, poll_interval: timedelta
) -> Stored:
    """Store one feed's fetch in one transaction: health, validators, posts, a Fetch row.

    A failure to store the posts is recorded as the feed's error (and comes back as failed,
    with ``bug`` set when it was not the database refusing the values); a database that fails
    even for that raises StorageError.
    """
    bug = None
    try:
        return store_results(db, [result], now, poll_interval)[0]
    except StorageError as e:
        error = f"cannot store: {e}"
        log.warning("feed %s: %s", result.job.url, error)
    except Exception as e:  # a bug met on one feed's values costs that feed
        bug = f"{type(e).__name__}: {e}"
        error = f"cannot store: {bug}"
        # The poll's error line names it; the traceback is for whoever looks into the bug.
        log.debug("feed %s: %s", result.job.url, error, exc_info=True)
    outcome = Outcome(FeedStatus.ERROR, None, error)
    failed = FeedResult(result.job, outcome, FetchOutcome.ERROR)
    store_results(db, [failed], now, poll_interval)
    return Stored(failed=True, bug=bug)


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
    health = policy.next_health(feed, outcome, now, poll_interval, _JITTER)
    values: dict[str, Any] = {name: getattr(feed, name) for name in FEED_WRITES}
    values.update(vars(health), feed_id_=feed.id, last_fetched_at=now)
    moved = fetched.permanent_redirect if fetched is not None else None
    if moved and moved != feed.url and len(moved) <= width.URL:
        log.warning("feed moved permanently: %s -> %s", feed.url, moved)
        values["url"] = moved
    if outcome.status in policy.HEALTHY:
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
    if outcome.status not in policy.HEALTHY:
        log.info("feed %s: %s", feed.url, outcome.error)
    return values, new, updated


def _validators(feed: Row[Any], fetched: FetchedFeed) -> dict[str, str | None]:
    etag, modified = (
        fit(fetched.etag, width.ETAG, cut=False),
        fit(fetched.last_modified, width.LAST_MODIFIED, cut=False),
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
        "url": (fetched.final_url if fetched else feed_url)[: width.URL],
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
            tally.add_posts(conn, len(self.inserts))
        if self.updates:
            conn.execute(_UPDATE_POST, self.updates)
        if self.rekeys:
            conn.execute(_REKEY_POST, self.rekeys)


def merge_posts(
    conn: Connection,
    feed_id: int,
    rows: Iterable[PostRow],
    now: datetime,
    first_poll: bool,
    writes: PostWrites,
) -> tuple[int, int]:
    """Plan new posts, changed ones and ones whose GUID changed into ``writes``: (new, updated)."""
    rows = list(rows)
    # A feed's posts are stored with its first successful poll, in one transaction.
    stored = {} if first_poll else _stored_posts(conn, feed_id, rows)
    steps = policy.plan_merge(((r.key, r.canonical_url, r.content_hash) for r in rows), stored)
    new = updated = 0
    for row, step in zip(rows, steps, strict=True):
        if step.action is policy.Merge.NEW:
            values = row._asdict()
            values.update(feed_id=feed_id, first_seen=now, from_first_poll=first_poll)
            writes.inserts.append(values)
            new += 1
        elif step.existing is not None and step.changed:
            values = row._asdict()
            writes.updates.append({**values, "post_id_": step.existing.id})
            updated += 1
        elif step.action is policy.Merge.REKEY and step.existing is not None:
            writes.rekeys.append({"post_id_": step.existing.id, "key": row.key})
    return new, updated


# Keys or links a query names at most (storage.in_pieces).
_LOOKUP_BATCH = 400


def _stored_posts(
    conn: Connection, feed_id: int, rows: list[PostRow]
) -> dict[str, policy.Existing]:
    """The feed's stored posts that its entries may be: each by its key, and for a key not
    stored (a new post, or a GUID that changed) by its link. Not every post the feed ever had:
    that read grew with its years at each poll that brought a change."""
    found = _existing(conn, feed_id, POSTS.c.key, {r.key for r in rows})
    known = {post.key for post in found.values()}
    links = {r.canonical_url for r in rows if r.key not in known and r.canonical_url}
    found |= _existing(conn, feed_id, POSTS.c.canonical_url, links)
    # Oldest first: of two stored posts at the link of a changed GUID, the first stored is it.
    return {post.key: post for _id, post in sorted(found.items())}


def _existing(
    conn: Connection, feed_id: int, column: Column[str], wanted: set[str]
) -> dict[int, policy.Existing]:
    """The feed's stored posts whose ``column`` is one of ``wanted``, by id."""
    found: dict[int, policy.Existing] = {}
    for batch in in_pieces(list(wanted), _LOOKUP_BATCH):
        query = _EXISTING.where(POSTS.c.feed_id == feed_id, column.in_(batch))
        found.update((r.id, policy.Existing(*r)) for r in conn.execute(query))
    return found


# Links compared canonical: a blog moving to https (guids and links with it) keeps its posts.
_EXISTING = select(POSTS.c.id, POSTS.c.key, POSTS.c.canonical_url, POSTS.c.content_hash)


def prune_fetches(db: Database, now: datetime) -> None:
    """Drop Fetch rows older than two weeks, at most once a day."""
    last = db.get_meta(metakeys.FETCHES_PRUNED)
    if not policy.fetch_prune_due(datetime.fromisoformat(last) if last else None, now):
        return
    old = FETCHES.c.at < now - policy.FETCH_HISTORY
    db.delete_in_batches(FETCHES.c.id, old, batch=FETCH_PRUNE_BATCH)
    db.set_meta(metakeys.FETCHES_PRUNED, now.isoformat())


# --- the daemon's schedule -----------------------------------------------------------------


def spread_overdue_polls(
    db: Database, now: datetime, window: timedelta, rng: random.Random | None = None
) -> int:
    """Spread the polls that fell due while no daemon ran over ``window``, longest waiting
    first; how many there were. Feeds never polled stay due at once: a new feed's posts are
    wanted now."""
    overdue = (
        select(FEEDS.c.id)
        .where(FEEDS.c.active.is_(True), FEEDS.c.polled_once.is_(True))
        .where(FEEDS.c.status != FeedStatus.GONE, FEEDS.c.due_at.is_not(None))
        .where(FEEDS.c.due_at <= now)
        .order_by(FEEDS.c.due_at, FEEDS.c.id)
    )
    return _spread(db, overdue, now, window, rng)


def bring_forward(
    db: Database, now: datetime, interval: timedelta, rng: random.Random | None = None
) -> int:
    """Feeds due later than one ``interval`` from now (scheduled under a longer interval
    than today's) are spread over the next interval instead; how many moved. A hold the
    server asked for (backoff, Retry-After) is not shortened.

    "Later" allows for the schedule's own jitter: right after a poll under the same interval,
    about half the feeds are due between 1 and 1.1 intervals away, and a restart must not
    move them (it did: 19 of 40 feeds moved, polled again minutes later)."""
    latest = now + interval * (1 + policy.SCHEDULE_JITTER)
    later = (
        select(FEEDS.c.id)
        .where(FEEDS.c.active.is_(True), FEEDS.c.status != FeedStatus.GONE)
        .where(FEEDS.c.due_at > latest)
        .where(or_(FEEDS.c.next_fetch_at.is_(None), FEEDS.c.next_fetch_at <= now))
        .order_by(FEEDS.c.due_at, FEEDS.c.id)
    )
    return _spread(db, later, now, interval, rng)


_MOVE = update(FEEDS).where(FEEDS.c.id == bindparam("feed_id_")).values(due_at=bindparam("at"))


def _spread(
    db: Database, feeds: Any, now: datetime, window: timedelta, rng: random.Random | None
) -> int:
    """Give the feeds ``feeds`` selects (ids, in order) random times in [now, now + window),
    in that order."""
    with db.begin() as conn:
        ids = list(conn.execute(feeds).scalars())
        times = policy.spread_times(len(ids), now, window, rng)
        if ids:
            conn.execute(
                _MOVE, [{"feed_id_": i, "at": at} for i, at in zip(ids, times, strict=True)]
            )
    return len(ids)
