"""Feeds and posts written straight into a database, for the issue tests."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime

from digest.models import Feed, Post
from digest.storage import Database

SAT = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)  # a Saturday send time
_keys = itertools.count()


def add_feed(
    db: Database,
    title: str,
    section: str = "ml",
    *,
    site: str | None = None,
    added: datetime = datetime(2025, 12, 1, tzinfo=UTC),
    active: bool = True,
) -> int:
    slug = title.lower().replace(" ", "-")
    with db.session() as s:
        feed = Feed(
            source_url=f"https://{slug}.example/feed.xml",
            url=f"https://{slug}.example/feed.xml",
            title=title,
            site_url=site or f"https://{slug}.example/",
            section=section,
            category=section,
            active=active,
            added_at=added,
            status="ok",
            polled_once=True,
            error_count=0,
        )
        s.add(feed)
        s.flush()
        return feed.id


def add_post(
    db: Database,
    feed_id: int,
    title: str,
    *,
    date: datetime | None,
    first_seen: datetime | None = None,
    first_poll: bool = False,
    link: str | None = None,
    text: str = "Words about the post.",
    author: str | None = None,
    words: int = 460,
    teaser: bool = False,
    page_words: int | None = None,
) -> int:
    n = next(_keys)
    link = link or f"https://posts.example/{feed_id}/{n}"
    with db.session() as s:
        post = Post(
            feed_id=feed_id,
            key=f"k{n}",
            title=title,
            link=link,
            canonical_url=link,
            author=author,
            published=date,
            updated=None,
            date=date,
            first_seen=first_seen or date or SAT,
            from_first_poll=first_poll,
            text=text,
            words=words,
            content_hash=hashlib.sha256(title.encode()).hexdigest(),
            teaser=teaser,
            page_words=page_words,
        )
        s.add(post)
        s.flush()
        return post.id
