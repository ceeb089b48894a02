"""Reading time of teaser-only posts: each recent one's web page fetched once, its words counted.

A feed that gives only a summary (Hugo's default, hand-made feeds) says nothing of how long
its posts are: "1 min read" for a forty-minute essay. The post's own page does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import bindparam, or_, select, update

from digest import words
from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.ingest.fetch import fetch_as_configured, origin
from digest.ingest.slots import politely
from digest.storage import Database
from digest.tables import FEEDS, POSTED, POSTS
from digest.urls import site_of

log = logging.getLogger(__name__)

# Posts older than this go in no upcoming issue: their pages are not worth a request.
PAGE_WINDOW = timedelta(days=8)
MAX_PAGES = 100  # pages fetched in one poll at most, newest posts first; the rest next time
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclass(frozen=True)
class PageJob:
    """A teaser-only post whose page has not been counted yet."""

    post_id: int
    url: str
    feed_url: str

    @property
    def on_feeds_site(self) -> bool:
        """Is the page on its feed's own site, and port? A feed can make us request its own
        site's pages only: a hostile one must not point us at another host or another port
        of its host (a service behind it), nor, by redirecting, anywhere else (fetched with
        same_origin)."""
        same_port = origin(self.url)[1] == origin(self.feed_url)[1]
        return same_port and site_of(self.url) == site_of(self.feed_url)


def select_pages(db: Database, now: datetime, limit: int = MAX_PAGES) -> list[PageJob]:
    """Recent teaser-only posts of active feeds with a link and no page count yet, as the
    issue judges recent: by date, else by first sighting after the feed's first poll."""
    query = (
        select(POSTS.c.id, POSTS.c.link, FEEDS.c.url)
        .join(FEEDS, FEEDS.c.id == POSTS.c.feed_id)
        .where(
            POSTS.c.teaser.is_(True),
            POSTS.c.page_words.is_(None),
            POSTS.c.link.is_not(None),
            FEEDS.c.active.is_(True),
            now - PAGE_WINDOW <= POSTED,
            # Undated on its feed's first poll: old news to the issue (a Hugo feed's FAQ page).
            or_(POSTS.c.date.is_not(None), POSTS.c.from_first_poll.is_(False)),
        )
        .order_by(POSTED.desc())
        .limit(limit)
    )
    with db.begin() as conn:
        return [PageJob(r.id, r.link, r.url) for r in conn.execute(query)]


def store_pages(db: Database, counted: list[tuple[int, int]]) -> None:
    """Save each post's page word count (0: the page could not be read; not tried again)."""
    if not counted:
        return
    statement = (
        update(POSTS).where(POSTS.c.id == bindparam("post_id_")).values(page_words=bindparam("w"))
    )
    with db.begin() as conn:
        conn.execute(statement, [{"post_id_": p, "w": w} for p, w in counted])


async def count_pages(
    db: Database,
    client: httpx.AsyncClient,
    feeds: FeedsSettings,
    now: datetime,
    stop: threading.Event | None = None,
) -> int:
    """Fetch and count the pages of recent teaser-only posts, politely (the per-host cap and
    the poll's concurrency); returns how many were counted. A stop leaves the rest for the
    next poll; a page that fails, or lies off its feed's site, counts 0 and the post's length
    stays unknown (the issue shows no reading time for it)."""
    jobs = await asyncio.to_thread(select_pages, db, now)
    if not jobs:
        return 0

    async def one(job: PageJob) -> tuple[int, int]:
        return job.post_id, await _page_words(client, job.url, feeds)

    on_site = [job for job in jobs if job.on_feeds_site]
    elsewhere = [(job.post_id, 0) for job in jobs if not job.on_feeds_site]
    counted = await politely(
        on_site, one, per_host=feeds.per_host, total=feeds.concurrency, stop=stop
    )
    await asyncio.to_thread(store_pages, db, counted + elsewhere)
    log.info("read the pages of %s", words.counted(len(counted), "teaser-only post"))
    return len(counted)


def _words_of(body: bytes) -> int:
    # lxml with digest.text (7.5 ms of imports) when a page is read, not at the end of each
    # poll, which imports this module to ask whether any page waits.
    from digest.text import page_words

    return page_words(body)


async def _page_words(client: httpx.AsyncClient, url: str, feeds: FeedsSettings) -> int:
    """The words of the article at ``url``; 0, logged, when it cannot be had."""
    try:
        fetched = await fetch_as_configured(
            client, url, feeds, accept=PAGE_ACCEPT, same_origin=True
        )
        content_type = fetched.headers.get("content-type", "text/html").lower()
        if fetched.body is None or "html" not in content_type:
            log.info("post page %s: HTTP %s, %s", url, fetched.status_code, content_type)
            return 0
        return await asyncio.to_thread(_words_of, fetched.body)
    except FetchError as e:
        log.info("post page %s: %s", url, e.message)
    except Exception as e:  # noqa: BLE001 - a hostile page must not end the poll
        log.warning("post page %s: cannot read it: %s: %s", url, type(e).__name__, e)
    return 0
