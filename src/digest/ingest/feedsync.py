"""The feeds table follows the OPML file: new outlines added, dropped ones made inactive."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select, update

from digest import columns as width
from digest import metakeys
from digest.columns import fit
from digest.ingest.retry import reset_health
from digest.ingest.summary import SyncResult
from digest.storage import Database
from digest.tables import FEEDS, META
from digest.types import FeedSource, FeedStatus, section_for

# What the OPML file decides about a feed; what syncing reads.
SYNCED_FROM_FILE = (
    "title",
    "site_url",
    "category",
    "section",
    "rule_skip",
    "rule_section",
    "rule_section_if",
)
SYNCED = (FEEDS.c.id, FEEDS.c.source_url, FEEDS.c.active, *(FEEDS.c[n] for n in SYNCED_FROM_FILE))
_UPDATE_SYNCED = (
    update(FEEDS)
    .where(FEEDS.c.id == bindparam("feed_id_"))
    .values({n: bindparam(n) for n in ("active", *SYNCED_FROM_FILE)})
)


SYNCED_LIST_KEY = metakeys.SYNCED_LIST


def sync_feeds(db: Database, sources: Iterable[FeedSource], now: datetime) -> SyncResult:
    """Make the feeds table follow the OPML file (matched on the URL the file names).

    New URLs are added; feeds missing from the file become inactive, their posts kept; a feed
    back in the file is active again and starts fresh (its health reset: no stale "gone", no
    backoff); title, site, category and section follow the file.
    Core statements (one SELECT, one executemany each for inserts and updates): thousands of
    ORM objects cost seconds and megabytes on every poll.
    """
    result = SyncResult()
    with db.begin() as conn:
        feeds = {f.source_url: f for f in conn.execute(select(*SYNCED))}
        seen: set[str] = set()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for src in sources:
            url = src.url.strip()
            if url in seen or len(url) > width.URL:
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
        reset_health(conn, [f.id for f in feeds.values() if f.source_url in seen and not f.active])
        if inserts or updates:
            conn.execute(delete(META).where(META.c.key == SYNCED_LIST_KEY))
    return result


def _new_feed(src: FeedSource, url: str, now: datetime) -> dict[str, Any]:
    return {
        "source_url": url,
        "url": url,
        "title": fit(src.title, width.NAME),
        "site_url": fit(src.site_url, width.URL, cut=False),
        **_from_file(src),
        "active": True,
        "added_at": now,
        "status": FeedStatus.NEW,
        "error_count": 0,
        "polled_once": False,
    }


def _synced_values(feed: Row[Any]) -> dict[str, Any]:
    return {name: getattr(feed, name) for name in SYNCED_FROM_FILE}


def _follow_source(feed: Row[Any], src: FeedSource) -> dict[str, Any]:
    """The values the file gives the feed (a file without a title or site keeps the feed's)."""
    return {
        "title": fit(src.title, width.NAME) if src.title else feed.title,
        "site_url": fit(src.site_url, width.URL, cut=False) if src.site_url else feed.site_url,
        **_from_file(src),
    }


def _from_file(src: FeedSource) -> dict[str, Any]:
    """Category, section and rules: what the file alone decides. A `section:` rule without
    `if` puts the whole feed in that section, whatever its folder."""
    rules = src.rules
    whole_feed = rules.section if rules.section and not rules.section_if else None
    return {
        "category": fit(src.category, width.NAME),
        "section": whole_feed or section_for(src.category),
        "rule_skip": rules.skip,
        "rule_section": rules.section,
        "rule_section_if": rules.section_if,
    }


def moved_feeds(db: Database) -> dict[str, str]:
    """The feeds that moved for good (a 301 or 308 answered): the URL the OPML file names,
    mapped to the one fetched now."""
    with db.begin() as conn:
        rows = conn.execute(
            select(FEEDS.c.source_url, FEEDS.c.url).where(FEEDS.c.url != FEEDS.c.source_url)
        )
        return {source: url for source, url in rows}
