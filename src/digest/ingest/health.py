"""Feed health as `digest feeds`, the daemon's log and the preview's note report it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from digest.ingest import policy
from digest.models import Feed, Fetch, Post
from digest.storage import Database, utcnow
from digest.types import SECTION_ORDER, FeedRules, FeedStatus, FetchOutcome
from digest.words import counted, show_time


def post_counts(s: Session) -> dict[int, int]:
    """Posts stored per feed id."""
    rows = s.execute(select(Post.feed_id, func.count()).group_by(Post.feed_id))
    return {feed_id: count for feed_id, count in rows}


@dataclass(frozen=True)
class FetchStats:
    """A feed's requests over the fetch history kept (two weeks): how good a citizen we are
    to its server, and how well it answers conditional requests."""

    requests: int = 0
    not_modified: int = 0  # answered 304
    unchanged: int = 0  # answered 200 with the body we already had (no validators honoured)
    errors: int = 0
    bytes: int = 0
    avg_ms: int = 0

    def as_json(self) -> dict[str, int]:
        return dict(vars(self))


def fetch_stats(s: Session, since: datetime) -> dict[int, FetchStats]:
    """FetchStats per feed id, from the Fetch rows since ``since``."""

    def count(outcome: FetchOutcome) -> Any:
        return func.sum(case((Fetch.outcome == outcome, 1), else_=0))

    rows = s.execute(
        select(
            Fetch.feed_id,
            func.count(),
            count(FetchOutcome.NOT_MODIFIED),
            count(FetchOutcome.UNCHANGED),
            count(FetchOutcome.ERROR),
            func.sum(Fetch.bytes),
            func.avg(Fetch.elapsed_ms),
        )
        .where(Fetch.at >= since)
        .group_by(Fetch.feed_id)
    )
    return {
        feed_id: FetchStats(
            n, int(nm or 0), int(same or 0), int(err or 0), int(size or 0), round(ms or 0)
        )
        for feed_id, n, nm, same, err, size, ms in rows
    }


@dataclass(frozen=True)
class FeedHealth:
    """One feed as `digest feeds` shows it."""

    id: int
    url: str
    source_url: str
    title: str | None
    section: str
    active: bool
    status: FeedStatus
    health: str  # the status in words, e.g. "backing off until 2026-11-22 15:00 UTC"
    last_status_code: int | None
    error: str | None
    warning: str | None  # the parser's complaint about the last body it could read
    posts: int
    last_success_at: datetime | None
    last_fetched_at: datetime | None
    next_fetch_at: datetime | None
    failing_since: datetime | None
    long_failing: bool
    fetches: FetchStats = FetchStats()
    rules: FeedRules = FeedRules()

    @property
    def failing(self) -> bool:
        return self.status in policy.FAILING

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "url": self.url,
            "source_url": self.source_url,
            "title": self.title,
            "section": self.section,
            "active": self.active,
            "status": self.status,
            "health": self.health,
            "last_status_code": self.last_status_code,
            "error": self.error,
            "warning": self.warning,
            "posts": self.posts,
            "last_success": iso(self.last_success_at),
            "last_fetched": iso(self.last_fetched_at),
            "next_fetch_at": iso(self.next_fetch_at),
            "failing_since": iso(self.failing_since),
            "failing_7_days": self.long_failing,
            "fetches_14_days": self.fetches.as_json(),
            "rules": {k: v for k, v in vars(self.rules).items() if v},
        }

    def rules_line(self) -> str:
        """The feed's rules as the list entry writes them, or ""."""
        rules = self.rules
        parts = [f'skip: "{rules.skip}"'] if rules.skip else []
        if rules.section:
            where = f' if "{rules.section_if}"' if rules.section_if else ""
            parts.append(f"section: {rules.section}{where}")
        return " — ".join(parts)


def list_feeds(db: Database, now: datetime | None = None, zone: str = "UTC") -> list[FeedHealth]:
    """Every feed with its health and post count, active ones first, by section and title;
    the times in its health words in ``zone`` (people's; UTC for JSON and logs)."""
    now = now or utcnow()
    with db.session() as s:
        counts, stats = post_counts(s), fetch_stats(s, now - policy.FETCH_HISTORY)
        feeds = list(s.scalars(select(Feed)))
        rows = [_health_row(f, counts.get(f.id, 0), stats.get(f.id), now, zone) for f in feeds]
    return sorted(rows, key=_listing_order)


def _listing_order(row: FeedHealth) -> tuple[Any, ...]:
    """Active feeds first, by section in issue order, then title as people sort ("Blog 2"
    before "Blog 10")."""
    section = SECTION_ORDER.index(row.section) if row.section in SECTION_ORDER else 99
    return (not row.active, section, natural_key(row.title or row.url), row.id)


def natural_key(text: str) -> tuple[tuple[int, str], ...]:
    """A sort key that reads the numbers in ``text`` as numbers."""
    parts = re.split(r"(\d+)", text.casefold())
    return tuple((int(p), "") if p.isdigit() else (0, p) for p in parts if p)


def _health_row(
    feed: Feed, posts: int, stats: FetchStats | None, now: datetime, zone: str
) -> FeedHealth:
    return FeedHealth(
        id=feed.id,
        url=feed.url,
        source_url=feed.source_url,
        title=feed.title,
        section=feed.section,
        active=feed.active,
        status=feed.status,
        health=describe_health(feed, now, zone),
        last_status_code=feed.last_status_code,
        error=feed.last_error if feed.status in policy.FAILING else None,
        warning=feed.last_warning,
        posts=posts,
        last_success_at=feed.last_success_at,
        last_fetched_at=feed.last_fetched_at,
        next_fetch_at=feed.next_fetch_at,
        failing_since=feed.failing_since,
        long_failing=policy.is_long_failing(feed, now),
        fetches=stats or FetchStats(),
        rules=FeedRules(feed.rule_skip, feed.rule_section, feed.rule_section_if),
    )


def describe_health(feed: Feed, now: datetime, zone: str = "UTC") -> str:
    """The feed's health in a few words, times in ``zone``."""
    held = feed.next_fetch_at if feed.next_fetch_at and feed.next_fetch_at > now else None
    if feed.status == FeedStatus.GONE:
        text = f"gone ({feed.last_status_code or 410})"
    elif feed.status == FeedStatus.BACKOFF:
        text = f"backing off until {show_time(held or now, zone)}: {feed.last_error}"
    elif feed.status == FeedStatus.ERROR:
        text = f"error: {feed.last_error}"
        if held:
            text += f" (retry after {show_time(held, zone)})"
    elif feed.status == FeedStatus.NOT_MODIFIED:
        text = "not modified"
    elif feed.status == FeedStatus.OK:
        text = "ok"
    else:
        text = "not polled yet"
    if not feed.active:
        text = "inactive (not in the OPML file); " + text
    if policy.is_long_failing(feed, now) and feed.failing_since is not None:
        text += f" [failing for {counted((now - feed.failing_since).days, 'day')}]"
    return text


def failing_note(db: Database, now: datetime, zone: str = "UTC") -> tuple[str, ...]:
    """One line per active feed failing for a week or more: the preview's feed health note
    (never in subscribers' copies), its dates in ``zone``."""
    with db.session() as s:
        feeds = s.scalars(
            select(Feed)
            .where(Feed.active, Feed.failing_since <= now - policy.LONG_FAILING)
            .order_by(Feed.failing_since)
        ).all()
        return tuple(
            f"{f.title or f.url}: failing since {show_time(f.failing_since, zone)}"
            f" ({f.last_error or f.status})"
            for f in feeds
            if f.failing_since is not None
        )
