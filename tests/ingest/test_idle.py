"""A poll with nothing to do, answered with sqlite3 (ingest/idle.py): the whole poll's verdict
and summary, and None whenever the whole poll may have something to do or to say."""

from __future__ import annotations

import os
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from digest.config import Settings
from digest.feedlist.listsync import sync_feed_list
from digest.ingest.feedstore import prune_fetches, select_jobs
from digest.ingest.idle import idle_poll, sqlite_file
from digest.ingest.tally import last_poll
from digest.locks import POLLER, DatabaseLock
from digest.metakeys import FETCHES_PRUNED, LAST_POLL
from digest.models import FEEDS, Meta
from digest.storage import Database
from digest.types import FeedStatus
from tests.poll_helpers import write_opml

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FEEDS_IN_LIST = 6


class Idle:
    """A synced feed list of six feeds, pruned at T0, and settings pointing at both."""

    def __init__(self, db: Database, url: str, tmp: Path) -> None:
        self.db = db
        self.opml = write_opml(
            tmp / "feeds.opml",
            [("ML", f"Blog {i}", f"https://blog{i}.example/feed") for i in range(FEEDS_IN_LIST)],
        )
        self.settings = Settings().replace(database={"url": url}, feeds={"opml": self.opml})
        sync_feed_list(db, self.opml, T0)
        prune_fetches(db, T0)

    def set_feeds(self, *states: dict[str, Any]) -> None:
        """Give the feeds, in id order, these column values."""
        with self.db.session() as s:
            conn = s.connection()
            ids = list(conn.execute(select(FEEDS.c.id).order_by(FEEDS.c.id)).scalars())
            for feed_id, values in zip(ids, states, strict=False):
                row = {**FRESH, **values}
                conn.execute(update(FEEDS).where(FEEDS.c.id == feed_id).values(**row))


@pytest.fixture
def idle(sqlite_db: Database, sqlite_url: str, tmp_path: Path) -> Idle:
    return Idle(sqlite_db, sqlite_url, tmp_path)


HOUR = timedelta(hours=1)
# What set_feeds writes unless told otherwise: no state of a previous draw stays.
FRESH: dict[str, Any] = {"active": True, "error_count": 0, "due_at": None, "next_fetch_at": None}
# What a feed can be when a poll comes: fetchable, or held back for each reason.
STATES: tuple[dict[str, Any], ...] = (
    {"status": FeedStatus.NEW, "next_fetch_at": None, "due_at": None},
    {"status": FeedStatus.OK, "next_fetch_at": None, "due_at": T0 + HOUR},
    {"status": FeedStatus.NOT_MODIFIED, "next_fetch_at": None, "due_at": T0 - HOUR},
    {"status": FeedStatus.GONE, "next_fetch_at": None, "due_at": None},
    {"status": FeedStatus.GONE, "next_fetch_at": T0 + HOUR, "due_at": None},
    {"status": FeedStatus.ERROR, "next_fetch_at": T0 + 2 * HOUR, "error_count": 3},
    {"status": FeedStatus.ERROR, "next_fetch_at": T0 - HOUR, "error_count": 1},
    {"status": FeedStatus.BACKOFF, "next_fetch_at": T0 + 3 * HOUR},
    {"status": FeedStatus.BACKOFF, "next_fetch_at": T0 - HOUR},
    {"active": False, "status": FeedStatus.OK, "next_fetch_at": None},
)
# Those a poll without --force leaves alone: gone, backing off, asked to wait, inactive.
HELD_STATES = tuple(STATES[i] for i in (3, 4, 5, 7, 9))


def test_it_answers_exactly_when_the_whole_poll_would_fetch_nothing(idle: Idle) -> None:
    verdicts = {"answered": 0, "whole poll": 0}
    for seed in range(60):
        rng = random.Random(seed)
        # Half the draws from the held states alone, so that both verdicts come up often.
        pool = HELD_STATES if seed % 2 else STATES
        idle.set_feeds(*(rng.choice(pool) for _ in range(FEEDS_IN_LIST)))
        force = rng.random() < 0.5

        jobs, held = select_jobs(idle.db, T0, due_only=False, force=force)
        answered = idle_poll(idle.settings, T0, force=force)

        if jobs:
            assert answered is None, seed
            verdicts["whole poll"] += 1
        else:
            assert answered is not None, seed
            assert (answered.held, answered.skipped) == (held, sum(held.counts.values()))
            assert (answered.feeds, answered.errors) == (0, 0)
            verdicts["answered"] += 1
    assert min(verdicts.values()) >= 10, verdicts


def test_it_keeps_the_record_a_poll_keeps(idle: Idle) -> None:
    idle.set_feeds(*[HELD_STATES[0]] * FEEDS_IN_LIST)  # all gone
    answered = idle_poll(idle.settings, T0)
    assert answered is not None and answered.held_json()["gone"] == FEEDS_IN_LIST

    record = last_poll(idle.db)
    assert record is not None and record["at"] == T0.isoformat()
    assert {k: record[k] for k in ("feeds", "new_posts", "errors")} == dict.fromkeys(
        ("feeds", "new_posts", "errors"), 0
    )
    with idle.db.session() as s:
        row = s.get(Meta, LAST_POLL)
        assert row is not None and row.updated_at == T0  # as models.UTCDateTime reads it back

    later = idle_poll(idle.settings, T0 + HOUR)  # the row updated, not added twice
    assert later is not None
    assert (last_poll(idle.db) or {})["at"] == (T0 + HOUR).isoformat()


def test_an_empty_list_is_nothing_to_do(
    sqlite_db: Database, sqlite_url: str, tmp_path: Path
) -> None:
    opml = write_opml(tmp_path / "feeds.opml", [])
    settings = Settings().replace(database={"url": sqlite_url}, feeds={"opml": opml})
    sync_feed_list(sqlite_db, opml, T0)
    prune_fetches(sqlite_db, T0)
    answered = idle_poll(settings, T0)
    assert answered is not None and answered.line() == (
        "polled 0 feeds: 0 new posts, 0 updated, 0 not modified, 0 errors in 0.0 s"
    )


def test_a_changed_list_is_for_the_whole_poll(idle: Idle) -> None:
    idle.set_feeds(*[HELD_STATES[0]] * FEEDS_IN_LIST)
    assert idle_poll(idle.settings, T0) is not None
    stat = idle.opml.stat()
    os.utime(idle.opml, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched
    assert idle_poll(idle.settings, T0) is None
    idle.opml.unlink()
    assert idle_poll(idle.settings, T0) is None  # no list: the whole poll says how to make one


def test_a_poll_holding_the_lock_is_for_the_whole_poll(idle: Idle) -> None:
    idle.set_feeds(*[HELD_STATES[0]] * FEEDS_IN_LIST)
    lock = DatabaseLock(idle.db, POLLER)
    lock.acquire()
    try:
        assert idle_poll(idle.settings, T0) is None
    finally:
        lock.release()
    assert idle_poll(idle.settings, T0) is not None


def test_a_prune_due_or_a_migration_to_run_is_for_the_whole_poll(idle: Idle) -> None:
    idle.set_feeds(*[HELD_STATES[0]] * FEEDS_IN_LIST)
    assert idle_poll(idle.settings, T0 + timedelta(hours=23)) is not None
    assert idle_poll(idle.settings, T0 + timedelta(days=1)) is None  # the daily prune
    with idle.db.session() as s:
        s.execute(text("DELETE FROM meta WHERE key = :k"), {"k": FETCHES_PRUNED})
    assert idle_poll(idle.settings, T0) is None  # never pruned

    prune_fetches(idle.db, T0)
    with idle.db.session() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0010'"))
    assert idle_poll(idle.settings, T0) is None


def test_a_file_the_whole_poll_would_warn_about_or_refuse(idle: Idle, tmp_path: Path) -> None:
    idle.set_feeds(*[HELD_STATES[0]] * FEEDS_IN_LIST)
    path = sqlite_file(idle.settings.database.url)
    assert path is not None and path.exists()
    path.chmod(0o644)  # readable by others: the whole poll warns
    assert idle_poll(idle.settings, T0) is None
    path.chmod(0o600)
    assert idle_poll(idle.settings, T0) is not None

    stranger = tmp_path / "other.db"
    sqlite3.connect(stranger).execute("CREATE TABLE t (x)").connection.commit()
    stranger.chmod(0o600)
    other = idle.settings.replace(database={"url": f"sqlite:///{stranger}"})
    assert idle_poll(other, T0) is None  # not a digest database
    missing = idle.settings.replace(database={"url": f"sqlite:///{tmp_path / 'none.db'}"})
    assert idle_poll(missing, T0) is None


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///digest.db", Path("digest.db")),
        ("sqlite:////var/lib/digest/digest.db", Path("/var/lib/digest/digest.db")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///digest.db?timeout=5", None),
        ("sqlite:///my%20db.db", None),
        ("postgresql://postgres@127.0.0.1:5432/test", None),
    ],
)
def test_only_a_plain_sqlite_file(url: str, path: Path | None) -> None:
    assert sqlite_file(url) == path
