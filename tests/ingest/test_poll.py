"""Polling on a real database (SQLite and PostgreSQL) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from digest.config import Settings
from digest.errors import LockedError
from digest.feedlist.opml import read_opml
from digest.ingest import parsers as parsers_module
from digest.ingest import worker as parse_rows
from digest.ingest import writer as writer_module
from digest.ingest.feedsync import sync_feeds
from digest.ingest.health import list_feeds
from digest.ingest.poll import poll_feeds
from digest.ingest.summary import PollSummary
from digest.locks import POLLER
from digest.models import Feed, Fetch, Post
from digest.settingvalues import parse_networks
from digest.storage import Database
from digest.types import FeedSource, FeedStatus
from tests.conftest import LOOPBACK, PARSER_KILLER, wait_for
from tests.lock_helpers import hearing_takeovers, take_over
from tests.poll_helpers import Item, atom, items, rss, write_opml
from tests.servers import FeedServer, Request, Response

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Setup:
    """A database, an OPML file and settings pointing at the loopback server."""

    def __init__(self, db: Database, http: FeedServer, tmp: Path) -> None:
        self.db, self.http, self.opml = db, http, tmp / "feeds.opml"
        self.settings = Settings().replace(
            feeds={
                "opml": self.opml,
                # Ample on a busy machine; the tests of timeouts set their own.
                "timeout": timedelta(seconds=10),
                "workers": 1,
                "allow_networks": parse_networks(LOOPBACK),
            }
        )

    def feeds(self, *entries: tuple[str, str, str]) -> None:
        write_opml(
            self.opml, [(folder, title, self.http.url(path)) for folder, title, path in entries]
        )

    def poll(self, now: datetime = T0, **kw: Any) -> PollSummary:
        return poll_feeds(self.db, self.settings, read_opml(self.opml), now=now, **kw)

    def feed(self, path: str) -> Feed:
        with self.db.session() as s:
            feed = s.scalars(select(Feed).where(Feed.source_url == self.http.url(path))).one()
            s.expunge(feed)
            return feed

    def first_poll(self, entries: list[Item], site: str = "https://blog.example") -> dict[str, int]:
        """List one feed, /f, serving ``entries``, and poll it: its posts' ids by link."""
        self.http.route("/f", Response(200, rss(entries, site=site)))
        self.feeds(("ML", "F", "/f"))
        self.poll()
        return {p.link or "": p.id for p in self.posts("/f")}

    def poll_again(self, entries: list[Item], site: str = "https://blog.example") -> PollSummary:
        """/f serving ``entries`` now, polled an hour after the first poll."""
        self.http.route("/f", Response(200, rss(entries, site=site)))
        return self.poll(T0 + timedelta(hours=1))

    def posts(self, path: str) -> list[Post]:
        feed = self.feed(path)
        with self.db.session() as s:
            rows = list(s.scalars(select(Post).where(Post.feed_id == feed.id).order_by(Post.key)))
            s.expunge_all()
            return rows


@pytest.fixture
def env(db: Database, http: FeedServer, tmp_path: Path) -> Setup:
    """Both backends: for what the poll stores."""
    return Setup(db, http, tmp_path)


@pytest.fixture
def sqlite_env(sqlite_db: Database, http: FeedServer, tmp_path: Path) -> Setup:
    """SQLite only: for how the poll talks HTTP (tests/README.md)."""
    return Setup(sqlite_db, http, tmp_path)


def count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- syncing with the OPML file ----------------------------------------------------------


def test_sync_adds_deactivates_reactivates_and_follows_the_file(db: Database) -> None:
    a, b = "https://a.example/feed", "https://b.example/feed"
    result = sync_feeds(db, [FeedSource(a, "A", category="ML"), FeedSource(b, "B")], T0)
    assert (result.added, result.deactivated) == (2, 0)
    with db.session() as s:
        feeds = {f.source_url: f for f in s.scalars(select(Feed))}
        assert feeds[a].section == "ml" and feeds[b].section == "other"
        s.add(Post(feed_id=feeds[b].id, key="k", title="t", first_seen=T0, content_hash="h"))

    result = sync_feeds(db, [FeedSource(a, "A renamed", category="Systems")], T0)
    assert (result.added, result.deactivated, result.changed) == (0, 1, 1)
    with db.session() as s:
        feeds = {f.source_url: f for f in s.scalars(select(Feed))}
        assert (feeds[a].title, feeds[a].section, feeds[a].category) == (
            "A renamed",
            "systems",
            "Systems",
        )
        assert not feeds[b].active
    assert count(db, Post) == 1  # the removed feed's posts are kept

    result = sync_feeds(db, [FeedSource(a, "A renamed", category="Systems"), FeedSource(b)], T0)
    assert (result.added, result.reactivated) == (0, 1)
    with db.session() as s:
        assert all(f.active for f in s.scalars(select(Feed)))
    assert count(db, Feed) == 2


def test_sync_ignores_repeated_urls(db: Database) -> None:
    url = "https://a.example/feed"
    result = sync_feeds(db, [FeedSource(url, "A"), FeedSource(url, "again")], T0)
    assert result.added == 1 and count(db, Feed) == 1


# --- storing posts -----------------------------------------------------------------------


def test_first_poll_stores_every_post(env: Setup) -> None:
    env.http.route("/rss", Response(200, rss(5), {"Content-Type": "application/rss+xml"}))
    env.http.route("/atom", Response(200, atom(3), {"Content-Type": "application/atom+xml"}))
    env.feeds(("ML", "R", "/rss"), ("Systems", "A", "/atom"))
    summary = env.poll()
    assert summary.as_json() == {
        "feeds": 2,
        "new_posts": 8,
        "updated_posts": 0,
        "not_modified": 0,
        "errors": 0,
    }
    posts = env.posts("/rss")
    assert len(posts) == 5
    post = next(p for p in posts if p.title == "Post 4")
    assert post.link == "https://blog.example/posts/4.html"
    assert post.canonical_url and "blog.example/posts/4" in post.canonical_url
    assert post.date == datetime(2026, 1, 5, 13, 0, tzinfo=UTC) and post.first_seen == T0
    assert post.from_first_poll and "Body of post 4" in post.text
    feed = env.feed("/atom")
    assert (feed.status, feed.section, feed.polled_once, feed.last_status_code) == (
        FeedStatus.OK,
        "systems",
        True,
        200,
    )
    assert feed.due_at is not None and feed.due_at > T0 and feed.last_success_at == T0
    assert len(env.posts("/atom")) == 3


def test_changed_entry_is_updated_not_duplicated_and_new_ones_are_not_backlog(env: Setup) -> None:
    entries = items(3)
    env.first_poll(entries)
    changed = [
        Item(entries[0].guid, "Post 2, corrected", entries[0].link, "New text."),
        *entries[1:],
    ]
    fresh = Item("https://blog.example/posts/99", "Brand new", "https://blog.example/posts/99.html")
    summary = env.poll_again([fresh, *changed])
    assert (summary.new_posts, summary.updated_posts) == (1, 1)
    posts = {p.key: p for p in env.posts("/f")}
    assert len(posts) == 4
    assert posts[entries[0].guid].title == "Post 2, corrected"
    assert posts[entries[0].guid].first_seen == T0  # an update keeps when we first saw it
    assert not posts[fresh.guid].from_first_poll
    assert posts[fresh.guid].first_seen == T0 + timedelta(hours=1)


def test_guid_change_with_the_same_link_is_not_a_new_post(env: Setup) -> None:
    entries = items(2)
    before = env.first_poll(entries)
    rekeyed = [
        Item("tag:blog.example,2026:" + e.link, e.title, e.link, e.text, e.date) for e in entries
    ]
    assert env.poll_again(rekeyed).new_posts == 0
    after = {p.link: p for p in env.posts("/f")}
    assert {link: p.id for link, p in after.items()} == before
    assert all(p.key.startswith("tag:") for p in after.values())


def test_a_long_feed_changed_and_rekeyed_is_matched_in_batches(env: Setup) -> None:
    """The stored posts are looked up by the entries' keys and links, 400 at a time (SQLite's
    oldest limit is 999 parameters a statement): 900 entries, every one edited, half of them
    under a new GUID, are 900 updates and no new post."""
    entries = items(900)
    before = env.first_poll(entries)
    edited = [
        Item(("tag:" if n % 2 else "") + e.guid, e.title + ", edited", e.link, e.text, e.date)
        for n, e in enumerate(entries)
    ]
    summary = env.poll_again(edited)
    assert (summary.new_posts, summary.updated_posts) == (0, 900)
    after = env.posts("/f")
    assert {p.link: p.id for p in after} == before
    assert sum(p.key.startswith("tag:") for p in after) == 450


def test_a_move_to_https_is_not_a_flood_of_new_posts(env: Setup) -> None:
    entries = items(3, site="http://blog.example")
    before = set(env.first_poll(entries, site="http://blog.example").values())
    moved = [
        Item(
            e.guid.replace("http:", "https:"),
            e.title,
            e.link.replace("http:", "https:"),
            e.text,
            e.date,
        )
        for e in entries
    ]
    assert env.poll_again(moved).new_posts == 0
    after = env.posts("/f")
    assert {p.id for p in after} == before
    assert all(p.link and p.link.startswith("https://") for p in after)


def test_unchanged_body_is_not_parsed_again(env: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    env.http.route("/f", Response(200, rss(4)))  # no validators: the server always sends 200
    env.feeds(("ML", "F", "/f"))
    calls: list[str] = []
    real = parse_rows.parse_feed

    def spy(*args: Any, **kw: Any) -> Any:
        calls.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(parse_rows, "parse_feed", spy)
    env.poll()
    summary = env.poll(T0 + timedelta(hours=1))
    assert len(calls) == 1 and len(env.http.hits("/f")) == 2
    assert (summary.not_modified, summary.new_posts) == (1, 0)
    assert env.feed("/f").status == FeedStatus.NOT_MODIFIED
    with env.db.session() as s:
        assert [f.outcome for f in s.scalars(select(Fetch).order_by(Fetch.id))] == [
            "new",
            "unchanged",
        ]


def test_304_costs_no_parse_and_saves_new_validators(
    env: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(req: Request) -> Response:
        if req.headers.get("if-none-match") == '"v1"':
            return Response(
                304, headers={"ETag": '"v2"', "Last-Modified": "Mon, 02 Mar 2026 09:00:00 GMT"}
            )
        return Response(
            200, rss(2), {"ETag": '"v1"', "Last-Modified": "Mon, 02 Mar 2026 08:00:00 GMT"}
        )

    env.http.route("/f", handler)
    env.feeds(("ML", "F", "/f"))
    env.poll()
    assert env.feed("/f").etag == '"v1"'
    parsed: list[bytes] = []
    monkeypatch.setattr(parse_rows, "parse_feed", lambda *a, **k: parsed.append(a[0]))
    summary = env.poll(T0 + timedelta(hours=1))
    assert summary.not_modified == 1 and parsed == []
    feed = env.feed("/f")
    assert (feed.etag, feed.last_modified) == ('"v2"', "Mon, 02 Mar 2026 09:00:00 GMT")
    assert feed.status == FeedStatus.NOT_MODIFIED and feed.last_status_code == 304
    assert env.http.hits("/f")[1].headers["if-modified-since"] == "Mon, 02 Mar 2026 08:00:00 GMT"


# --- bad feeds next to good ones --------------------------------------------------------


def test_bad_bodies_get_readable_errors_and_the_others_go_on(env: Setup) -> None:
    env.http.route("/good", Response(200, rss(3)))
    env.http.route(
        "/malformed", Response(200, rss(3)[:150], {"Content-Type": "application/rss+xml"})
    )
    env.http.route(
        "/html",
        Response(
            200, b"<!doctype html><title>Blog</title><p>hi</p>", {"Content-Type": "text/html"}
        ),
    )
    latin = rss(2).replace(b'encoding="UTF-8"', b'encoding="x-no-such-charset"') + b"\xff\xfe\x00"
    env.http.route(
        "/charset", Response(200, latin, {"Content-Type": "text/xml; charset=x-no-such"})
    )
    env.feeds(
        ("ML", "G", "/good"),
        ("ML", "M", "/malformed"),
        ("ML", "H", "/html"),
        ("ML", "C", "/charset"),
    )
    summary = env.poll()
    assert summary.feeds == 4 and summary.new_posts >= 3
    assert len(env.posts("/good")) == 3
    for path in ("/malformed", "/html"):
        feed = env.feed(path)
        assert feed.status == FeedStatus.ERROR and feed.last_error
        assert "\n" not in feed.last_error and "Traceback" not in feed.last_error
        assert feed.etag is None and feed.body_hash is None  # a broken body is parsed again
    assert summary.errors >= 2
    health = {h.url: h for h in list_feeds(env.db, T0)}
    assert health[env.http.url("/html")].health.startswith("error: ")
    assert health[env.http.url("/good")].error is None


# --- HTTP statuses, holds and redirects --------------------------------------------------


def test_410_marks_the_feed_gone_and_it_is_never_fetched_again(env: Setup) -> None:
    env.http.route("/gone", Response(410, b"gone"))
    env.feeds(("ML", "G", "/gone"))
    summary = env.poll()
    assert summary.errors == 1
    feed = env.feed("/gone")
    assert feed.status == FeedStatus.GONE and feed.last_status_code == 410
    env.poll(T0 + timedelta(days=30))
    assert len(env.http.hits("/gone")) == 1
    [row] = list_feeds(env.db, T0)
    assert row.health == "gone (410)" and row.status == "gone"


@pytest.mark.parametrize("code", [404, 500])
def test_errors_back_off_and_are_retried_later(env: Setup, code: int) -> None:
    env.http.route("/bad", Response(code, b"no"))
    env.feeds(("ML", "B", "/bad"))
    env.poll()
    feed = env.feed("/bad")
    assert feed.status == FeedStatus.ERROR and feed.error_count == 1 and feed.failing_since == T0
    assert feed.next_fetch_at is not None and feed.next_fetch_at > T0
    env.poll(T0 + timedelta(minutes=1))
    assert len(env.http.hits("/bad")) == 1  # held back
    env.poll(T0 + timedelta(minutes=6))
    assert len(env.http.hits("/bad")) == 2
    feed = env.feed("/bad")
    assert feed.error_count == 2 and feed.next_fetch_at is not None
    assert feed.next_fetch_at - (T0 + timedelta(minutes=6)) > timedelta(minutes=8)
    [row] = list_feeds(env.db, T0 + timedelta(minutes=6))
    assert row.health.startswith(f"error: HTTP {code}") and "retry after" in row.health
    env.http.route("/bad", Response(200, rss(1)))
    env.poll(T0 + timedelta(days=1, minutes=1))
    feed = env.feed("/bad")
    assert (feed.status, feed.error_count, feed.failing_since) == (FeedStatus.OK, 0, None)


@pytest.mark.parametrize(
    ("retry_after", "hold"),
    [("120", timedelta(seconds=120)), ("Mon, 02 Mar 2026 10:00:00 GMT", timedelta(hours=2))],
)
def test_429_is_not_fetched_before_retry_after(
    env: Setup, retry_after: str, hold: timedelta
) -> None:
    env.http.route("/busy", Response(429, b"slow down", {"Retry-After": retry_after}))
    env.feeds(("ML", "B", "/busy"))
    env.poll()
    feed = env.feed("/busy")
    assert feed.status == FeedStatus.BACKOFF and feed.next_fetch_at == T0 + hold
    env.poll(T0 + hold - timedelta(seconds=1))
    assert len(env.http.hits("/busy")) == 1
    [row] = list_feeds(env.db, T0)
    assert row.health.startswith("backing off until 2026-03-02") and "429" in row.health
    env.poll(T0 + hold)
    assert len(env.http.hits("/busy")) == 2


def test_retry_after_counts_from_the_answer(sqlite_env: Setup) -> None:
    env = sqlite_env
    env.http.route("/busy", Response(429, b"later", {"Retry-After": "5"}, delay=2.2))
    env.feeds(("ML", "B", "/busy"))
    env.settings = env.settings.replace(feeds={"timeout": timedelta(seconds=5)})
    env.poll()
    feed = env.feed("/busy")
    assert feed.next_fetch_at is not None
    assert feed.next_fetch_at >= T0 + timedelta(seconds=2 + 5)


def test_503_with_retry_after(env: Setup) -> None:
    env.http.route("/down", Response(503, b"maintenance", {"Retry-After": "3600"}))
    env.feeds(("ML", "D", "/down"))
    env.poll()
    feed = env.feed("/down")
    assert feed.status == FeedStatus.BACKOFF and feed.next_fetch_at == T0 + timedelta(hours=1)


def test_301_updates_the_url_and_keeps_the_opml_identity(
    env: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    env.http.route("/old", Response(301, headers={"Location": "/new"}))
    env.http.route("/new", Response(200, rss(2)))
    env.feeds(("ML", "F", "/old"))
    env.poll()
    feed = env.feed("/old")
    assert feed.url == env.http.url("/new") and feed.source_url == env.http.url("/old")
    assert "moved permanently" in caplog.text
    env.poll(T0 + timedelta(hours=1))
    assert len(env.http.hits("/old")) == 1 and len(env.http.hits("/new")) == 2
    assert count(env.db, Feed) == 1 and len(env.posts("/old")) == 2


def test_302_keeps_the_url(env: Setup) -> None:
    env.http.route("/old", Response(302, headers={"Location": "/tmp"}))
    env.http.route("/tmp", Response(200, rss(1)))
    env.feeds(("ML", "F", "/old"))
    env.poll()
    assert env.feed("/old").url == env.http.url("/old")


def test_a_slow_feed_does_not_hold_up_the_poll(sqlite_env: Setup) -> None:
    env = sqlite_env
    env.http.route("/slow", Response(200, rss(1), delay=4))  # latency: past the 1 s timeout
    env.settings = env.settings.replace(feeds={"timeout": timedelta(seconds=1)})
    env.http.route("/fast", Response(200, rss(2)))
    env.feeds(("ML", "S", "/slow"), ("ML", "F", "/fast"))
    started = time.monotonic()
    summary = env.poll()
    assert time.monotonic() - started < 3
    assert (summary.errors, summary.new_posts) == (1, 2)
    assert env.feed("/slow").last_error == "timed out after 1 s"


def test_per_host_limit_holds_during_a_poll(sqlite_env: Setup) -> None:
    env = sqlite_env
    for i in range(6):
        env.http.route(f"/f{i}", Response(200, rss(1, site=f"https://b{i}.example")))
    env.feeds(*[("ML", f"F{i}", f"/f{i}") for i in range(6)])
    env.settings = env.settings.replace(feeds={"per_host": 2, "timeout": timedelta(seconds=30)})
    env.http.hold_after(0)  # every request waits until two are in flight
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(env.poll)
        try:
            wait_for(lambda: env.http.in_flight == 2, what="two requests in flight")
        finally:
            env.http.release()
        summary = polling.result(60)
    assert summary.feeds == 6 and env.http.max_in_flight == 2


def test_waiting_for_a_host_slot_does_not_count_against_the_timeout(sqlite_env: Setup) -> None:
    env = sqlite_env
    # One at a time, 4 × 0.6 s (latency): each request's 1 s deadline starts when its turn comes.
    for i in range(4):
        env.http.route(f"/f{i}", Response(200, rss(1, site=f"https://b{i}.example"), delay=0.6))
    env.feeds(*[("ML", f"F{i}", f"/f{i}") for i in range(4)])
    env.settings = env.settings.replace(feeds={"per_host": 1, "timeout": timedelta(seconds=1)})
    summary = env.poll()
    assert (summary.feeds, summary.errors, summary.new_posts) == (4, 0, 4)
    assert env.http.max_in_flight == 1


# --- scheduling and stopping -------------------------------------------------------------


def test_due_only_fetches_only_due_feeds(env: Setup) -> None:
    env.http.route("/f", Response(200, rss(1)))
    env.feeds(("ML", "F", "/f"))
    env.poll(due_only=True)
    due = env.feed("/f").due_at
    assert due is not None
    summary = env.poll(due - timedelta(minutes=1), due_only=True)
    assert summary.feeds == 0 and summary.skipped == 0  # not due: neither fetched nor read
    env.poll(due + timedelta(seconds=1), due_only=True)
    assert len(env.http.hits("/f")) == 2


def test_stop_before_start_fetches_nothing(env: Setup) -> None:
    env.http.route("/f", Response(200, rss(1)))
    env.feeds(("ML", "F", "/f"))
    stop = threading.Event()
    stop.set()
    summary = env.poll(stop=stop)
    assert summary.feeds == 0 and env.http.requests == []


def test_stop_drops_fetches_in_flight_unsaved(env: Setup) -> None:
    env.settings = env.settings.replace(feeds={"timeout": timedelta(seconds=10)})
    env.http.route("/fast", Response(200, rss(1)))
    reached, release = threading.Event(), threading.Event()

    def slow(_req: Request) -> Response:  # answers only when the test says
        reached.set()
        release.wait(30)
        return Response(200, rss(1))

    env.http.route("/slow", slow)
    env.feeds(("ML", "F", "/fast"), ("ML", "S", "/slow"))
    stop = threading.Event()
    stopped_at: list[float] = []

    def stop_mid_poll() -> None:  # once the fast feed is stored and the slow one in flight
        assert reached.wait(30)
        wait_for(lambda: env.feed("/fast").status == FeedStatus.OK, what="the fast feed stored")
        stopped_at.append(time.monotonic())
        stop.set()

    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(stop_mid_poll)
        try:
            summary = env.poll(stop=stop)
        finally:
            release.set()
        stopping.result(30)
    assert time.monotonic() - stopped_at[0] < 2  # it did not wait for the slow answer
    slow_feed = env.feed("/slow")
    assert slow_feed.status == FeedStatus.NEW and slow_feed.last_fetched_at is None  # unsaved
    assert summary.feeds == 1 and summary.skipped == 1
    # The next poll finishes the job.
    env.http.route("/slow", Response(200, rss(1)))
    env.poll(T0 + timedelta(minutes=1))
    assert env.feed("/slow").status == FeedStatus.OK


def test_many_feeds_parse_in_worker_processes(env: Setup) -> None:
    n = parsers_module.MIN_POOL_BATCH + 2
    for i in range(n):
        env.http.route(f"/f{i}", Response(200, rss(3, site=f"https://b{i}.example")))
    # A parse failure in a worker comes back as that feed's error, not a broken pool.
    env.http.route("/page", Response(200, b"<!doctype html><p>hi", {"Content-Type": "text/html"}))
    env.feeds(*[("Systems", f"F{i}", f"/f{i}") for i in range(n)], ("ML", "P", "/page"))
    env.settings = env.settings.replace(feeds={"workers": 2})
    summary = env.poll()
    assert (summary.feeds, summary.new_posts, summary.errors) == (n + 1, 3 * n, 1)
    assert env.feed("/page").status == FeedStatus.ERROR


def test_a_parser_bug_costs_one_feed(env: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(body: bytes, url: str, *args: Any, **kw: Any) -> Any:
        if url.endswith("/bad"):
            raise RecursionError("maximum recursion depth exceeded")
        return real(body, url, *args, **kw)

    real = parse_rows.parse_feed
    monkeypatch.setattr(parse_rows, "parse_feed", broken)
    env.http.route("/bad", Response(200, rss(2)))
    env.http.route("/good", Response(200, rss(2)))
    env.feeds(("ML", "B", "/bad"), ("ML", "G", "/good"))
    summary = env.poll()
    assert (summary.new_posts, summary.errors) == (2, 1)
    assert env.feed("/bad").last_error == (
        "the parser failed: RecursionError: maximum recursion depth exceeded"
    )


def test_fetches_are_recorded_and_old_ones_pruned(env: Setup) -> None:
    env.http.route("/f", Response(200, rss(1)))
    env.feeds(("ML", "F", "/f"))
    env.poll()
    env.poll(T0 + timedelta(days=20))
    with env.db.session() as s:
        rows = list(s.scalars(select(Fetch)))
    assert [r.at for r in rows] == [T0 + timedelta(days=20)]
    assert rows[0].status_code == 200 and rows[0].url == env.http.url("/f")


def test_feed_fetch_stats_cover_the_last_two_weeks(env: Setup) -> None:
    env.http.route("/f", Response(200, rss(2)))
    env.feeds(("ML", "F", "/f"))
    env.poll()
    env.poll(T0 + timedelta(hours=2))  # the same body again: "unchanged", not parsed
    [row] = list_feeds(env.db, T0 + timedelta(hours=3))
    stats = row.fetches
    assert (stats.requests, stats.unchanged, stats.not_modified, stats.errors) == (2, 1, 0, 0)
    assert stats.bytes == 2 * len(rss(2))
    [later] = list_feeds(env.db, T0 + timedelta(days=15))
    assert later.fetches.requests == 0  # older than the history kept


def test_long_failing_feeds_are_flagged(env: Setup) -> None:
    env.http.route("/bad", Response(500))
    env.feeds(("ML", "B", "/bad"))
    env.poll()
    [row] = list_feeds(env.db, T0 + timedelta(days=8))
    assert row.long_failing and "failing for 8 days" in row.health
    assert row.as_json()["error"] == "HTTP 500 Internal Server Error"


def test_a_store_that_fails_counts_as_an_error(env: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    from digest.errors import StorageError
    from digest.ingest import feedstore

    real = feedstore.store_results

    def failing(db: Database, results: list[Any], *args: Any) -> Any:
        if any(r.job.url.endswith("/bad.xml") and r.data for r in results):
            raise StorageError("database error while storing: a unique violation")
        return real(db, results, *args)

    monkeypatch.setattr(feedstore, "store_results", failing)
    monkeypatch.setattr(writer_module, "store_results", failing)
    env.http.route("/good.xml", Response(200, rss(2)))
    env.http.route("/bad.xml", Response(200, rss(3, site="https://bad.example")))
    env.feeds(("ML", "Good", "/good.xml"), ("ML", "Bad", "/bad.xml"))
    summary = env.poll()
    assert (summary.feeds, summary.new_posts, summary.errors) == (2, 2, 1)
    bad = env.feed("/bad.xml")
    assert bad.status == FeedStatus.ERROR and "cannot store" in (bad.last_error or "")


def test_a_poll_whose_lock_is_taken_over_stops_at_once(
    env: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another poll took the lock over (this one's heartbeat was late): this one drops its
    fetches in flight, starts no other, and fails with a line saying who has the lock."""
    for i in range(12):
        env.http.route(f"/f{i}", Response(200, rss(1, site=f"https://b{i}.example")))
    env.feeds(*[("ML", f"F{i}", f"/f{i}") for i in range(12)])
    env.settings = env.settings.replace(feeds={"per_host": 2, "concurrency": 2})
    env.http.hold_after(2)  # two answered; the next two are held when the lock is lost
    with hearing_takeovers(monkeypatch) as holder, ThreadPoolExecutor(1) as pool:
        polling = pool.submit(env.poll)
        try:
            assert env.http.held.wait(30), "the poll never reached its third feed"
            newcomer = take_over(env.db, POLLER)
            assert holder.heard.wait(30), "the poll never noticed it lost its lock"
            with pytest.raises(LockedError, match="the poll lock was taken over by pid") as e:
                polling.result(60)
        finally:
            env.http.release()
    assert "this poll stopped (polled" in str(e.value)
    assert len(env.http.requests) <= 4  # the 2 answered and the 2 held: none started after
    with env.db.session() as s:
        fetched = s.scalar(select(func.count()).where(Feed.last_fetched_at.is_not(None)))
    assert fetched is not None and fetched <= 2
    newcomer.release()
    summary = env.poll(T0 + timedelta(minutes=1))  # the next poll fetches the rest
    assert summary.errors == 0


def poison_feeds(env: Setup, good: int) -> None:
    """``good`` readable feeds and one whose parse kills the parser process (conftest's
    PARSER_KILLER in a valid feed: parsed anywhere else, it would be read fine)."""
    for i in range(good):
        env.http.route(f"/f{i}", Response(200, rss(3, site=f"https://b{i}.example")))
    poison = rss(3, site="https://poison.example").replace(
        b"<channel>", PARSER_KILLER.encode() + b"<channel>", 1
    )
    env.http.route("/poison", Response(200, poison))
    env.feeds(*[("Systems", f"F{i}", f"/f{i}") for i in range(good)], ("ML", "Poison", "/poison"))
    env.settings = env.settings.replace(feeds={"workers": 2})


def test_a_dead_parser_costs_its_feed_only_and_is_never_parsed_here(env: Setup) -> None:
    n = parsers_module.MIN_POOL_BATCH + 4
    poison_feeds(env, n)
    summary = env.poll()
    assert (summary.feeds, summary.new_posts, summary.errors) == (n + 1, 3 * n, 1)
    poisoned = env.feed("/poison")
    # Parsed in this process it would have been stored: status OK, three posts.
    assert (poisoned.status, poisoned.last_error) == (FeedStatus.ERROR, "parser process died")
    assert env.posts("/poison") == []
    assert all(len(env.posts(f"/f{i}")) == 3 for i in range(n))


def test_the_daemons_parser_pool_lasts_and_is_made_anew_after_a_death(env: Setup) -> None:
    poison_feeds(env, 2)  # a round of three bodies: a lasting pool parses them in workers
    pool = parsers_module.ParserPool(2, lasting=True)
    try:
        first = poll_feeds(env.db, env.settings, read_opml(env.opml), now=T0, parsers=pool)
        assert (first.feeds, first.new_posts, first.errors) == (3, 6, 1)
        assert pool.died == 1 and env.feed("/poison").last_error == "parser process died"
        # The next round: every feed changed; the pool is a new one, and it lasts.
        for i in range(2):
            env.http.route(f"/f{i}", Response(200, rss(4, site=f"https://b{i}.example")))
        env.http.route("/poison", Response(200, rss(3, site="https://poison.example")))
        later = T0 + timedelta(hours=2)
        second = poll_feeds(env.db, env.settings, None, now=later, parsers=pool)
        assert (second.new_posts, second.errors) == (2 + 3, 0)
        kept = pool._pool
        assert kept is not None
        third = poll_feeds(env.db, env.settings, None, now=later + timedelta(hours=2), parsers=pool)
        assert third.errors == 0 and pool._pool is kept
    finally:
        pool.close()


def test_the_last_results_are_stored_without_waiting_for_company(
    sqlite_env: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every feed's result is handed in, the store thread stores what is pending at once:
    with an hour's linger the poll would hang here (pytest's timeout) instead of ending."""
    monkeypatch.setattr(writer_module, "STORE_LINGER", 3600.0)
    sqlite_env.http.route("/a", Response(304))
    sqlite_env.http.route("/b", Response(200, rss(2)))
    sqlite_env.feeds(("ML", "A", "/a"), ("ML", "B", "/b"))
    summary = sqlite_env.poll()
    assert (summary.feeds, summary.new_posts, summary.errors) == (2, 2, 0)
