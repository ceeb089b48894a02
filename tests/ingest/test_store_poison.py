"""A bug in the poll's store thread (issue 23): it fails the poll with one clear error once the
other feeds are stored, never leaves the poll waiting, and the daemon's next round runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from digest.config import Settings
from digest.configfile import load_settings
from digest.daemon.service import Daemon
from digest.errors import StorageError
from digest.feedlist.opml import read_opml
from digest.ingest import feedstore
from digest.ingest import writer as writer_module
from digest.ingest.poll import poll_feeds
from digest.ingest.tally import fetch_totals, last_poll
from digest.ingest.writer import StoreWriter
from digest.models import Feed, Post
from digest.settingvalues import parse_networks
from digest.storage import Database
from digest.types import FeedJob, FeedResult, FeedStatus, FetchOutcome, Outcome
from tests import poison_store
from tests.conftest import LOOPBACK, run_digest
from tests.daemon_helpers import FEEDS, Farm, Running, base_env
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Response

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def settings_for(opml: Path) -> Settings:
    return Settings().replace(
        feeds={
            "opml": opml,
            "timeout": timedelta(seconds=10),
            "workers": 1,
            "allow_networks": parse_networks(LOOPBACK),
        }
    )


def serve_three_good_and_a_poison(http: FeedServer, opml: Path) -> None:
    for name in ("a", "b", "c"):
        http.route(f"/{name}.xml", Response(200, rss(4, site=f"https://{name}.example")))
    http.route("/poison.xml", Response(200, rss(3, site="https://poison.example")))
    write_opml(opml, [("ML", n, http.url(f"/{n}.xml")) for n in ("a", "b", "poison", "c")])


def feed_by_path(db: Database, http: FeedServer, path: str) -> Feed:
    with db.session() as s:
        feed = s.scalars(select(Feed).where(Feed.source_url == http.url(path))).one()
        s.expunge(feed)
        return feed


def post_count(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Post)) or 0)


def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedstore, "store_results", poison_store.poisoned)
    monkeypatch.setattr(writer_module, "store_results", poison_store.poisoned)


def test_a_bug_in_the_store_thread_settles_every_store_waiting(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timeout-free: the store thread is joined, then every store must be settled (before the
    fix a TypeError escaped the thread and its futures stayed pending: the poll waited forever)."""

    def broken(*args: Any) -> Any:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(writer_module, "store_results", broken)
    monkeypatch.setattr(writer_module, "store_result", broken)
    jobs = [FeedJob(k, f"https://f{k}.example/feed", None, None, None) for k in (1, 2, 3)]

    async def store_all() -> list[asyncio.Future[feedstore.Stored]]:
        writer = StoreWriter(sqlite_db, T0, timedelta(hours=1))
        ok = Outcome(FeedStatus.NOT_MODIFIED, 304)
        futures = [writer.store(FeedResult(job, ok, FetchOutcome.NOT_MODIFIED)) for job in jobs]
        # The store thread settles each future through call_soon_threadsafe before close()
        # joins it; to_thread's own result comes the same way after that, so by the time this
        # resumes the loop has run every settling callback (FIFO): no extra turn needed.
        await asyncio.to_thread(writer.close)
        return futures

    futures = asyncio.run(store_all())
    assert all(f.done() for f in futures)
    errors = [f.exception() for f in futures]
    assert all(isinstance(e, StorageError) for e in errors)
    assert str(errors[0]) == (
        "the store thread failed storing https://f1.example/feed: "
        "TypeError: unsupported operand type(s) for +: 'int' and 'str'"
    )


def test_a_bug_storing_one_feed_fails_the_poll_once_the_others_are_stored(
    db: Database, http: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opml = tmp_path / "feeds.opml"
    serve_three_good_and_a_poison(http, opml)
    settings = settings_for(opml)
    poison(monkeypatch)
    with pytest.raises(StorageError) as failed:
        poll_feeds(db, settings, read_opml(opml), now=T0)
    message = str(failed.value)
    assert message.startswith(
        f"the poll could not store {http.url('/poison.xml')} (TypeError: {poison_store.BUG}); "
        "the other feeds were stored (polled 4 feeds: 12 new posts, 0 updated, 0 not modified, "
        "1 error in "
    )
    assert "\n" not in message
    # The good ones all done; the poison one set aside, with its error, to be retried later.
    assert post_count(db) == 12
    for name in ("a", "b", "c"):
        assert feed_by_path(db, http, f"/{name}.xml").status == FeedStatus.OK
    bad = feed_by_path(db, http, "/poison.xml")
    assert bad.status == FeedStatus.ERROR
    assert bad.last_error == f"cannot store: TypeError: {poison_store.BUG}"
    # Counted: the poll's record and the request totals have it.
    record = last_poll(db)
    assert record is not None and (record["feeds"], record["errors"]) == (4, 1)
    assert fetch_totals(db)["error"] == 1 and fetch_totals(db)["new"] == 3
    # The lock was released: the next poll (the bug fixed) runs and stores the set-aside feed.
    monkeypatch.undo()
    later = T0 + timedelta(days=1)
    summary = poll_feeds(db, settings, read_opml(opml), now=later)
    assert summary.store_failures == [] and post_count(db) == 15


def test_the_daemon_logs_a_failed_round_and_runs_the_next(
    sqlite_db: Database,
    http: FeedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    opml = tmp_path / "feeds.opml"
    serve_three_good_and_a_poison(http, opml)
    settings = load_settings(
        env={
            "DIGEST_WEB_ENABLED": "false",
            "DIGEST_FEEDS_OPML": str(opml),
            "DIGEST_FEEDS_ALLOW_NETWORKS": LOOPBACK,
            "DIGEST_FEEDS_WORKERS": "1",
        }
    )
    poison(monkeypatch)
    daemon = Daemon(sqlite_db, settings)  # the real poll
    poll_job = daemon._job("poll", daemon._poll_round)
    with caplog.at_level(logging.INFO, logger="digest.daemon.service"):
        poll_job()  # what the scheduler calls each tick
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.getMessage().startswith(
        f"poll: the poll could not store {http.url('/poison.xml')} (TypeError: "
    )
    assert post_count(sqlite_db) == 12
    # The next round runs (a feed added meanwhile is due at once) and holds no stale lock.
    http.route("/d.xml", Response(200, rss(2, site="https://d.example")))
    feeds = [("ML", n, http.url(f"/{n}.xml")) for n in ("a", "b", "poison", "c", "d")]
    write_opml(opml, feeds)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="digest.daemon.service"):
        poll_job()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        r.getMessage().startswith("poll round: polled 1 feed: 2 new") for r in caplog.records
    )
    assert post_count(sqlite_db) == 14


@pytest.mark.slow
def test_digest_poll_with_a_poison_feed_stores_the_rest_and_fails_in_one_line(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    """End to end: a real `digest poll` process (tests/poison_store.py puts the bug in its
    store thread), a real HTTP server on loopback, a real database."""
    opml = workdir / "feeds.opml"
    serve_three_good_and_a_poison(http, opml)
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_OPML": str(opml)}
    poll = run_digest(["poll"], env | poison_store.process_env(workdir), workdir)
    assert poll.returncode == 1, poll.stderr
    assert poll.stdout == ""
    [line] = poll.stderr.splitlines()  # one line, no traceback
    assert line.startswith(
        f"Error: the poll could not store {http.url('/poison.xml')} (TypeError: "
        f"{poison_store.BUG}); the other feeds were stored (polled 4 feeds: 12 new posts"
    )
    db = Database(sqlite_url)
    try:
        assert post_count(db) == 12
        bad = feed_by_path(db, http, "/poison.xml")
        assert bad.last_error == f"cannot store: TypeError: {poison_store.BUG}"
    finally:
        db.dispose()
    # The lock was released: the same poll without the bug runs at once.
    again = run_digest(["poll", "--json"], env, workdir)
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_digest_run_logs_the_failed_round_and_polls_on(
    workdir: Path, sqlite_url: str, http: FeedServer, runs: list[Running]
) -> None:
    """End to end: a real `digest run` with the bug in its store thread (tests/poison_store.py)
    fails the round that meets the poison feed, logs it, and its next rounds run."""
    farm = Farm(http)
    http.route("/poison.xml", Response(200, rss(3, site="https://poison.example")))
    env = base_env(workdir, sqlite_url, farm)
    feeds = [(f, f"{n} blog", http.url(f"/{n}.xml")) for f, n in FEEDS]
    write_opml(workdir / "feeds.opml", [*feeds, ("ML", "poison blog", http.url("/poison.xml"))])
    run = Running(env | poison_store.process_env(workdir), workdir, workdir / "run.log")
    runs.append(run)
    failed = run.wait_log(lambda r: r.get("event") == "poll" and "error" in r, 60)
    assert failed["level"] == "error"
    assert failed["error"].startswith(
        f"the poll could not store {http.url('/poison.xml')} (TypeError: {poison_store.BUG}); "
        "the other feeds were stored (polled 4 feeds: 9 new posts"
    )
    # The next rounds run: a new post on a good feed is stored.
    farm.add_post("ml")
    run.wait_log(lambda r: r.get("event") == "poll" and r.get("new_posts") == 1, 60)
    code, _took = run.terminate()
    assert code == 0, run.text()
    assert run.records()[-1]["message"] == "stopped"
    db = Database(sqlite_url)
    try:
        assert post_count(db) == 10
        bad = feed_by_path(db, http, "/poison.xml")
        assert bad.last_error == f"cannot store: TypeError: {poison_store.BUG}"
    finally:
        db.dispose()
