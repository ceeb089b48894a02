"""The daemon's rounds share one event loop, one HTTP client and one store thread; after the
first one, what is alive is frozen out of the garbage collector's walks."""

from __future__ import annotations

import gc
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings
from digest.daemon.polling import RoundPoller
from digest.daemon.service import Daemon
from digest.errors import StorageError
from digest.ingest.summary import PollSummary
from digest.settingvalues import parse_networks
from digest.storage import Database
from tests.conftest import LOOPBACK
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Response


def settings_for(opml: Path) -> Settings:
    return Settings().replace(
        feeds={
            "opml": opml,
            "timeout": timedelta(seconds=10),
            "workers": 1,
            "per_host": 1,
            "allow_networks": parse_networks(LOOPBACK),
        }
    )


def count_connections(http: FeedServer) -> list[int]:
    """The connections the server accepts from now on, counted in the one element."""
    accepted = [0]
    accept = http.httpd.get_request

    def counting() -> Any:
        conn = accept()
        accepted[0] += 1
        return conn

    http.httpd.get_request = counting  # type: ignore[method-assign]
    return accepted


def poll_threads() -> list[threading.Thread]:
    names = ("digest-poll-loop", "digest-store")
    return [t for t in threading.enumerate() if t.name.startswith(names)]


def test_the_next_round_reuses_the_connection_and_threads(
    sqlite_db: Database, http: FeedServer, tmp_path: Path
) -> None:
    opml = tmp_path / "feeds.opml"
    for name in ("a", "b", "c"):
        http.route(f"/{name}.xml", Response(200, rss(2, site=f"https://{name}.example")))
    write_opml(opml, [("ML", n, http.url(f"/{n}.xml")) for n in ("a", "b", "c")])
    settings = settings_for(opml)
    accepted = count_connections(http)
    poller = RoundPoller(settings)
    try:
        first = poller(sqlite_db, settings)
        threads = poll_threads()
        second = poller(sqlite_db, settings)
        assert (first.feeds, first.new_posts, second.feeds, second.new_posts) == (3, 6, 3, 0)
        # One host, one connection at a time (per_host 1): kept alive for both rounds.
        assert accepted[0] == 1
        assert poll_threads() == threads and len(threads) == 2
    finally:
        poller.close()
    assert not any(t.is_alive() for t in threads)


def test_cookies_a_feed_sets_last_one_round(
    sqlite_db: Database, http: FeedServer, tmp_path: Path
) -> None:
    opml = tmp_path / "feeds.opml"
    body = rss(1, site="https://a.example")
    http.route("/a.xml", Response(200, body, headers={"Set-Cookie": "visit=1; Path=/"}))
    write_opml(opml, [("ML", "a", http.url("/a.xml"))])
    settings = settings_for(opml)
    poller = RoundPoller(settings)
    try:
        poller(sqlite_db, settings)
        poller(sqlite_db, settings)
    finally:
        poller.close()
    assert [r.headers.get("cookie") for r in http.hits("/a.xml")] == [None, None]


def test_a_poller_closed_before_any_round_starts_nothing(tmp_path: Path) -> None:
    before = poll_threads()
    RoundPoller(settings_for(tmp_path / "feeds.opml")).close()
    assert poll_threads() == before


def test_the_first_round_freezes_what_is_alive_once_even_when_it_fails(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[int] = []
    collections: list[int] = []

    def failing_poll(db: Database, settings: Settings, **kwargs: Any) -> PollSummary:
        rounds.append(gc.get_freeze_count())
        raise StorageError("the database is gone")

    def counted_collect(generation: int = 2) -> int:
        collections.append(generation)
        return 0

    monkeypatch.setattr(gc, "collect", counted_collect)
    unfrozen = Daemon(sqlite_db, settings_for(tmp_path / "feeds.opml"), poll=failing_poll)
    frozen = Daemon(
        sqlite_db, settings_for(tmp_path / "feeds.opml"), poll=failing_poll, freeze_gc=True
    )
    try:
        unfrozen._job("poll", unfrozen._poll_round)()
        assert gc.get_freeze_count() == 0 and not collections
        for _round in range(2):
            frozen._job("poll", frozen._poll_round)()
        assert rounds[0] == rounds[1] == 0 and rounds[2] > 0
        assert gc.get_freeze_count() >= rounds[2] and collections == [2]
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
