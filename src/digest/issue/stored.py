"""Stored posts as an issue reads them: the candidates of a window, the posts an issue claimed,
each with what it needs of its feed and its feed's rules applied."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row, Select, and_, case, func, null, or_, select
from sqlalchemy.orm import Session

from digest.issue.compose import LATE_GRACE, Window
from digest.issue.rules import apply_rules
from digest.models import POSTED, Feed, Issue, Post
from digest.storage import in_pieces
from digest.types import FeedRules, StoredPost

# A post's length in words as far as it is known: a teaser's is its page's once counted
# (ingest/pages.py; 0 when the page could not be read), else unknown (NULL): its summary's 125
# words say nothing of a 13,000-word essay. In SQL: two more columns through the ORM cost a
# busy week's plan 10 ms.
_STORED_WORDS = func.coalesce(Post.words, 0)
_KNOWN_WORDS = case(
    (Post.page_words > _STORED_WORDS, Post.page_words),
    (Post.page_words > 0, _STORED_WORDS),
    (Post.teaser, null()),
    else_=_STORED_WORDS,
)
# A post's text only where planning reads it: to tell a post of links alone (_only_links:
# short, starting with a URL) and to count words no one stored (picks.minutes_of). Excerpts
# read the rest's, for the few posts an issue can show as items (texts_of, at rendering).
# 40,000 recent posts' texts (1.8 KB each) lifted a send's and a preview's peak RSS by 72 MB
# (225 -> 153 MB, 212 -> 140 MB; bench/recent_send.py), and a preview's CPU by ~0.1 s.
_PLAN_TEXT = case(
    (
        or_(
            _KNOWN_WORDS == 0,
            and_(func.length(Post.text) <= 2000, Post.text.like("http%")),
        ),
        Post.text,
    ),
    else_="",
)


def candidates(s: Session, window: Window) -> list[StoredPost]:
    """Posts that may belong to the window (compose.belongs decides), skipped ones left out."""
    later = select(Issue.id).where(Issue.window_end > window.end)
    dated = and_(Post.date > window.start - LATE_GRACE, Post.date <= window.end)
    undated = and_(
        Post.date.is_(None), Post.first_seen > window.start, Post.first_seen <= window.end
    )
    # Both hold this range of coalesce(date, first_seen): an index range on either database
    # (ix_posts_posted), where PostgreSQL read the whole posts index for the ORs.
    near = and_(window.start - LATE_GRACE < POSTED, window.end >= POSTED)
    query = (
        _post_query()
        .where(Feed.active, near, or_(dated, undated))
        # Unclaimed posts; and, for an older week rendered again, those later issues took.
        .where(or_(Post.issue_id.is_(None), Post.issue_id.in_(later)))
    )
    return _posts(s, s.execute(query))


def claimed_posts(s: Session, issue_id: int) -> list[StoredPost]:
    return _posts(s, s.execute(_post_query().where(Post.issue_id == issue_id)))


@dataclass(frozen=True)
class Found:
    """A stored post at a URL, as a pick or skip judges it."""

    post: StoredPost | None  # None: a skip rule of its feed leaves it out of every issue
    issue_id: int | None  # the issue it went out in
    active: bool  # its feed is still on the list


def posts_at(s: Session, key: str) -> list[Found]:
    """The stored posts whose canonical URL is ``key`` (one per feed that has it)."""
    rows = s.execute(
        select(Post.id, Post.issue_id, Feed.active)
        .join(Feed, Feed.id == Post.feed_id)
        .where(Post.canonical_url == key)
    ).all()
    ids = [row.id for row in rows]
    ruled = {p.id: p for p in _posts(s, s.execute(_post_query().where(Post.id.in_(ids))))}
    return [Found(ruled.get(row.id), row.issue_id, bool(row.active)) for row in rows]


def _post_query() -> Select[*tuple[Any, ...]]:
    # Columns in StoredPost's field order, then the feed's URL and the post's categories.
    return select(
        Post.id,
        Post.feed_id,
        Feed.title,
        Feed.site_url,
        Feed.section,
        Post.title,
        Post.link,
        Post.canonical_url,
        Post.author,
        Post.date,
        Post.first_seen,
        Post.from_first_poll,
        _PLAN_TEXT,
        _KNOWN_WORDS,
        Feed.url,
        Post.categories,
    ).join(Feed, Feed.id == Post.feed_id)


def _posts(s: Session, rows: Iterable[Row[Any]]) -> list[StoredPost]:
    """The rows as posts, their feeds' rules applied (a skipped post is left out)."""
    rules = _feed_rules(s)
    posts = []
    for row in rows:
        values: tuple[Any, ...] = tuple(row)
        feed_url, categories = values[-2:]
        post = StoredPost(*values[:-2])
        if not post.feed_title or post.text is None or _only_links(post.text):
            post = replace(
                post,
                feed_title=post.feed_title or _host(feed_url),
                text=post.text or "",
                words=None if _only_links(post.text) else post.words,
            )
        ruled = rules.get(post.feed_id)
        kept = post if ruled is None else apply_rules(post, categories, ruled)
        if kept is not None:
            posts.append(kept)
    return posts


def texts_of(s: Session, ids: Iterable[int]) -> dict[int, str]:
    """The texts of the posts ``ids`` (a planned post's text is left empty: see _PLAN_TEXT)."""
    wanted = sorted(set(ids))
    texts: dict[int, str] = {}
    for chunk in in_pieces(wanted, 500):
        rows = s.execute(select(Post.id, Post.text).where(Post.id.in_(chunk)))
        texts.update((post_id, text or "") for post_id, text in rows)
    return texts


def _only_links(text: str | None) -> bool:
    """The feed gave the post's address and no word of it (Zola's <content> of one link)."""
    if not text or len(text) > 2000 or not text.startswith(("http://", "https://")):
        return False  # the common case, without splitting 6,000 posts' texts (30 ms)
    words = text.split()
    return len(words) <= 3 and all(w.startswith(("http://", "https://")) for w in words)


def _feed_rules(s: Session) -> dict[int, FeedRules]:
    """The rules that act on single posts, by feed (a plain `section:` moved the whole feed
    when the feeds table was synced)."""
    query = select(Feed.id, Feed.rule_skip, Feed.rule_section, Feed.rule_section_if).where(
        or_(Feed.rule_skip.is_not(None), Feed.rule_section_if.is_not(None))
    )
    return {
        feed: FeedRules(skip, section, section_if)
        for feed, skip, section, section_if in s.execute(query)
    }


def _host(url: str) -> str:
    return urlsplit(url).hostname or url
