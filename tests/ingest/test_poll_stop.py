"""What a stop leaves of a poll (one driver, one rule: slots.Driver): fetches in flight are
dropped unsaved; a body already given to the parser is parsed and stored."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.config import Settings
from digest.feedlist.opml import read_opml
from digest.ingest import worker
from digest.ingest.poll import poll_feeds
from digest.settingvalues import parse_networks
from digest.storage import Database
from digest.types import FeedStatus
from tests.conftest import LOOPBACK
from tests.ingest.test_store_poison import feed_by_path, post_count
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Request, Response

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_a_stop_drops_the_fetch_in_flight_and_stores_the_body_being_parsed(
    sqlite_db: Database, http: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsing, parse_on = threading.Event(), threading.Event()
    fetching, answer = threading.Event(), threading.Event()
    real = worker.parse_feed

    def held_parse(body: bytes, url: str, *args: Any, **kw: Any) -> Any:
        parsing.set()
        assert parse_on.wait(30)
        return real(body, url, *args, **kw)

    def held_answer(_req: Request) -> Response:
        fetching.set()
        answer.wait(30)
        return Response(200, rss(2, site="https://slow.example"))

    monkeypatch.setattr(worker, "parse_feed", held_parse)
    http.route("/parsed.xml", Response(200, rss(3, site="https://parsed.example")))
    http.route("/slow.xml", held_answer)
    opml = write_opml(
        tmp_path / "feeds.opml",
        [("ML", "Parsed", http.url("/parsed.xml")), ("ML", "Slow", http.url("/slow.xml"))],
    )
    settings = Settings().replace(
        feeds={
            "opml": opml,
            "timeout": timedelta(seconds=30),
            "workers": 1,
            "allow_networks": parse_networks(LOOPBACK),
        }
    )
    stop = threading.Event()

    def stop_while_both_are_held() -> None:
        assert parsing.wait(30) and fetching.wait(30)
        stop.set()
        parse_on.set()  # the parse ends after the stop

    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(stop_while_both_are_held)
        try:
            summary = poll_feeds(sqlite_db, settings, read_opml(opml), now=T0, stop=stop)
        finally:
            parse_on.set()
            answer.set()
        stopping.result(30)
    assert (summary.feeds, summary.new_posts, summary.skipped) == (1, 3, 1)
    assert feed_by_path(sqlite_db, http, "/parsed.xml").status == FeedStatus.OK
    assert post_count(sqlite_db) == 3
    slow = feed_by_path(sqlite_db, http, "/slow.xml")
    assert slow.status == FeedStatus.NEW and slow.last_fetched_at is None  # dropped unsaved
