"""What the picks' scores read from storage (issue/picks.py scores it): each blog's history
and the links between the list's blogs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from digest.issue.compose import Window
from digest.issue.picks import HISTORY, BlogHistory, Signals
from digest.models import POSTED, Feed, Post, UTCDateTime
from digest.types import StoredPost, Verdict


def load_signals(
    s: Session, posts: Sequence[StoredPost], window: Window, verdicts: Mapping[str, Verdict]
) -> Signals:
    """The signals of ``posts`` for the issue of ``window``, with the curator's ``verdicts``
    on it (issue/curation.py reads them)."""
    feeds = {p.feed_id for p in posts}
    targets = {p.canonical_url for p in posts if p.canonical_url}
    return Signals(_histories(s, feeds, window), _linked_by(s, targets, window), verdicts)


def _histories(s: Session, feeds: set[int], window: Window) -> dict[int, BlogHistory]:
    """Each blog's posts in the HISTORY up to the window's end, and its latest post before the
    window (a post in this issue that came in late may be that one: picks.py ignores it).
    Both read a bounded range of ix_posts_feed_posted: one grouped pass over every post of the
    week's blogs read five years of them at each preview and send (the cost grew with history)."""
    rows = s.execute(
        select(Post.feed_id, func.count(), func.min(type_coerce(POSTED, UTCDateTime)))
        .where(Post.feed_id.in_(feeds), window.end - HISTORY < POSTED, window.end >= POSTED)
        .group_by(Post.feed_id)
    )
    recent = {feed: (int(count), oldest) for feed, count, oldest in rows}
    latest = (
        select(func.max(type_coerce(POSTED, UTCDateTime)))
        .where(Post.feed_id == Feed.id, window.start >= POSTED)
        .scalar_subquery()
    )
    histories = {}
    for feed, before in s.execute(select(Feed.id, latest).where(Feed.id.in_(feeds))):
        count, oldest = recent.get(feed, (0, None))
        days = _days(window.end - oldest) if oldest else 0.0
        histories[feed] = BlogHistory(count, days, before)
    return histories


def _days(span: timedelta) -> float:
    return span.total_seconds() / 86400


def _linked_by(s: Session, targets: set[str], window: Window) -> dict[str, frozenset[int]]:
    """For each of ``targets``, the active feeds whose posts dated in this window or the one
    before link to it."""
    earliest = window.start - (window.end - window.start)
    rows = s.execute(
        select(Post.feed_id, Post.links)
        .join(Feed, Feed.id == Post.feed_id)
        .where(Feed.active, Post.links.is_not(None), earliest < POSTED, window.end >= POSTED)
    )
    found: dict[str, set[int]] = {}
    for feed, links in rows:
        for url in (links or "").split("\n"):
            if url in targets:
                found.setdefault(url, set()).add(feed)
    return {url: frozenset(feeds) for url, feeds in found.items()}
