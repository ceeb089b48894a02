"""Reading time of teaser-only posts from their pages: real process, real HTTP; the stop on
both databases (nothing half-written), the rest on SQLite (tests/README.md)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from digest.config import FeedsSettings
from digest.ingest.fetch import make_client
from digest.ingest.pages import count_pages, select_pages
from digest.ingest.summary import PollSummary
from digest.models import Feed, Post
from digest.settingvalues import parse_networks
from digest.storage import Database
from tests.conftest import LOOPBACK, run_cli, run_digest
from tests.issue_helpers import add_feed, add_post
from tests.poll_helpers import Item, rss, write_opml
from tests.servers import FeedServer, Request, Response

TEASER = " ".join(["teaser"] * 50)


def article(words: int) -> bytes:
    body = "".join(f"<p>{' '.join(['word'] * 100)}</p>" for _ in range(words // 100))
    return (
        "<!doctype html><html><head><title>A post</title></head><body>"
        "<nav>Home Archive About</nav><article><h1>A post</h1>"
        f"{body}</article><footer>Copyright</footer></body></html>"
    ).encode()


def serve(http: FeedServer, now: datetime) -> None:
    teasers = [
        Item("long", "A long essay", http.url("/posts/long.html"), TEASER, now - timedelta(days=1)),
        Item(
            "gone", "A lost essay", http.url("/posts/missing.html"), TEASER, now - timedelta(days=2)
        ),
        Item("old", "An old essay", http.url("/posts/old.html"), TEASER, now - timedelta(days=40)),
        # Another host than the feed's (localhost, not 127.0.0.1): never requested.
        Item(
            "away",
            "An essay elsewhere",
            f"http://localhost:{http.port}/posts/away.html",
            TEASER,
            now - timedelta(days=1),
        ),
    ]
    http.route("/teasers.xml", Response(200, rss(teasers, "Teaser blog")))
    full = (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Full blog'
        "</title><link>https://full.example/</link><item><title>A whole post</title>"
        f"<link>{http.url('/posts/full.html')}</link><guid>full</guid>"
        f"<pubDate>{(now - timedelta(days=1)).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>"
        f"<description>{TEASER}</description><content:encoded>Short and whole."
        "</content:encoded></item></channel></rss>"
    ).encode()
    http.route("/full.xml", Response(200, full))
    http.route("/posts/long.html", Response(200, article(2200), {"Content-Type": "text/html"}))
    http.route("/posts/missing.html", Response(404, b"not found"))
    for path in ("/posts/old.html", "/posts/full.html", "/posts/away.html"):
        http.route(path, Response(200, article(5000), {"Content-Type": "text/html"}))


def test_a_teaser_posts_reading_time_comes_from_its_page(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    now = datetime.now(UTC)
    serve(http, now)
    write_opml(
        workdir / "feeds.opml",
        [
            ("ML", "Teaser blog", http.url("/teasers.xml")),
            ("Systems", "Full blog", http.url("/full.xml")),
        ],
    )
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_NEWSLETTER_BASE_URL": "https://news.example"}
    polled = run_digest(["poll", "--json"], env, workdir)
    assert polled.returncode == 0, polled.stderr
    assert json.loads(polled.stdout)["new_posts"] == 5
    assert "pages read" not in polled.stdout  # the JSON summary keeps its keys

    # Each recent teaser's page once, asking for HTML; not an old post's, not a full post's.
    [long_page] = http.hits("/posts/long.html")
    assert "text/html" in long_page.headers["accept"]
    assert len(http.hits("/posts/missing.html")) == 1
    for path in ("/posts/old.html", "/posts/full.html", "/posts/away.html"):
        assert http.hits(path) == [], path
    db = Database(sqlite_url)
    with db.session() as s:
        pages = {key: words for key, words in s.execute(select(Post.key, Post.page_words))}
    db.dispose()
    # The article's 2,200 words and its title; not the menu's or the footer's.
    assert pages == {"long": 2202, "gone": 0, "old": None, "full": None, "away": 0}

    again = run_cli(["poll"], env)
    assert again.exit_code == 0, again.output
    assert "pages read" not in again.stdout
    assert len(http.hits("/posts/long.html")) == 1 and len(http.hits("/posts/missing.html")) == 1

    as_of = (now + timedelta(hours=1)).isoformat()
    text = run_cli(["preview", "--as-of", as_of, "--format", "text", "-o", "-"], env)
    assert text.exit_code == 0, text.output
    issue = " ".join(text.stdout.split())
    # 2,202 words at 230 a minute, not the teaser's 50; the unreadable page's post has no
    # reading time at all: its length is unknown, and the teaser's "1 min" would mislead.
    assert "A long essay Teaser blog · " in issue and " · 10 min read teaser" in issue
    lost = re.search(r"A lost essay Teaser blog · (\w+ \d+ \w+) (\S+)", issue)
    assert lost and lost.group(2) != "·", issue


def test_fetching_pages_can_be_turned_off(workdir: Path, sqlite_url: str, http: FeedServer) -> None:
    serve(http, datetime.now(UTC))
    write_opml(workdir / "feeds.opml", [("ML", "Teaser blog", http.url("/teasers.xml"))])
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_FETCH_PAGES": "false"}
    polled = run_cli(["poll"], env)
    assert polled.exit_code == 0, polled.output
    assert http.hits("/posts/long.html") == []


def test_select_pages_takes_recent_unfetched_teasers_newest_first(db: Database) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    blog = add_feed(db, "Blog")
    closed = add_feed(db, "Closed", active=False)
    day = timedelta(days=1)
    newer = add_post(db, blog, "newer", date=now - day, teaser=True)
    older = add_post(db, blog, "older", date=now - 3 * day, teaser=True)
    undated = add_post(db, blog, "undated", date=None, first_seen=now - 2 * day, teaser=True)
    add_post(db, blog, "counted", date=now - day, teaser=True, page_words=900)
    add_post(db, blog, "whole", date=now - day)
    add_post(db, blog, "stale", date=now - 30 * day, teaser=True)
    add_post(db, closed, "inactive feed", date=now - day, teaser=True)
    add_post(db, blog, "undated backlog", date=None, first_seen=now, first_poll=True, teaser=True)
    jobs = select_pages(db, now)
    assert [j.post_id for j in jobs] == [newer, undated, older]
    assert [j.post_id for j in select_pages(db, now, limit=1)] == [newer]


def test_the_poll_summary_says_how_many_pages_it_read() -> None:
    assert "; 3 teaser posts' pages read for their length" in PollSummary(feeds=2, pages=3).line()
    assert "pages" not in PollSummary(feeds=2).line()


def test_a_stop_drops_the_pages_in_flight_and_leaves_them_for_later(
    db: Database, http: FeedServer
) -> None:
    now = datetime.now(UTC)
    http.route("/fast.html", Response(200, article(300), {"Content-Type": "text/html"}))
    reached, release = threading.Event(), threading.Event()

    def slow(_req: Request) -> Response:  # answers only when the test says
        reached.set()
        release.wait(30)
        return Response(200, article(300), {"Content-Type": "text/html"})

    http.route("/slow.html", slow)
    feed = add_feed(db, "Blog")
    with db.session() as s:  # the feed lives on the test server's site
        s.execute(update(Feed).where(Feed.id == feed).values(url=http.url("/feed.xml")))
    fast = add_post(db, feed, "fast", date=now, teaser=True, link=http.url("/fast.html"))
    slow_post = add_post(
        db, feed, "slow", date=now - timedelta(minutes=1), teaser=True, link=http.url("/slow.html")
    )
    stop = threading.Event()
    stopped_at: list[float] = []

    def stop_mid_way() -> None:
        # One page at a time, newest first: the slow page is asked for once the fast one is in.
        assert reached.wait(30)
        stopped_at.append(time.monotonic())
        stop.set()

    async def poll_pages() -> int:
        feeds = FeedsSettings(allow_networks=parse_networks(LOOPBACK), per_host=1)
        async with make_client(feeds) as client:
            return await count_pages(db, client, feeds, now, stop)

    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(stop_mid_way)
        try:
            assert asyncio.run(poll_pages()) == 1
        finally:
            release.set()
        stopping.result(30)
    assert time.monotonic() - stopped_at[0] < 3  # not the slow page's answer, nor the timeout
    with db.session() as s:
        words = dict(s.execute(select(Post.id, Post.page_words)).all())
    assert words == {fast: 302, slow_post: None}  # the slow one is the next poll's
