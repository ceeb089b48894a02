"""Pure decisions of an issue: which posts belong to a window, and how they are laid out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.issue.excerpts import excerpt
from digest.text import one_line, reading_minutes
from digest.types import OTHER, SECTION_ORDER, SECTION_TITLES, StoredPost

FIRST_WINDOW = timedelta(days=7)  # the first issue looks back a week
LATE_GRACE = timedelta(days=7)  # a post first seen late still goes out if no older than this
MAX_PER_BLOG = 6  # even a blog alone in its section shows no more than this


@dataclass(frozen=True)
class Window:
    """The time an issue covers: after ``start``, up to and including ``end`` (UTC)."""

    start: datetime
    end: datetime


def window_for(end: datetime, previous_ends: Iterable[datetime]) -> Window:
    """The window ending at ``end``: from the latest earlier issue's end, else a week back."""
    earlier = [e for e in previous_ends if e < end]
    return Window(max(earlier) if earlier else end - FIRST_WINDOW, end)


def belongs(post: StoredPost, window: Window) -> bool:
    """Does this (not yet sent) post go into the issue of ``window``?"""
    if post.date is not None:
        if window.start < post.date <= window.end:
            return True
        # Its feed was down: first seen after the last issue went out, dated just before it.
        return (
            not post.from_first_poll
            and window.start - LATE_GRACE <= post.date <= window.start
            and window.start < post.first_seen <= window.end
        )
    # No trusted date: the day we first saw it is its date, unless it came with a new
    # feed's backlog, where an undated entry is old, not new.
    return not post.from_first_poll and window.start < post.first_seen <= window.end


def post_date(post: StoredPost) -> datetime:
    return post.date or post.first_seen


def unique_articles(posts: Iterable[StoredPost]) -> tuple[list[StoredPost], list[StoredPost]]:
    """(kept, duplicates): one post per canonical URL, preferring a known section, then the
    first seen."""
    kept: dict[str, StoredPost] = {}
    dropped: list[StoredPost] = []
    ordered = sorted(posts, key=lambda p: (p.section == OTHER, p.first_seen, p.id))
    for post in ordered:
        key = post.canonical_url or f"post:{post.id}"
        if key in kept:
            dropped.append(post)
        else:
            kept[key] = post
    return list(kept.values()), dropped


# ---- layout -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """How rich the layout is; the renderer steps down until the email fits its budget."""

    per_blog: int  # full items shown per blog
    per_section: int  # full items shown per section
    excerpt_words: int  # 0: no excerpt


# Richest first; under pressure, more blogs with one post each beat more posts per blog.
LEVELS = (
    Level(3, 40, 55),
    Level(2, 30, 45),
    Level(1, 30, 45),
    Level(1, 24, 40),
    Level(1, 20, 40),
    Level(1, 16, 30),
    Level(1, 12, 25),
    Level(1, 8, 20),
    Level(1, 5, 0),
    Level(1, 2, 0),
    Level(0, 0, 0),
)


@dataclass(frozen=True)
class Item:
    """One post as the email shows it."""

    title: str
    link: str | None
    blog: str
    author: str | None  # only when it is not just the blog's name
    date: datetime
    minutes: int
    excerpt: str


@dataclass(frozen=True)
class Blog:
    """A blog's shown posts, and a count of the ones left out."""

    title: str
    site_url: str | None
    items: tuple[Item, ...]
    more: int  # posts of this blog in the issue but not shown as items
    newest: datetime


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    blogs: tuple[Blog, ...]  # blogs with at least one item shown
    more_blogs: tuple[Blog, ...]  # blogs named only as "N more posts from X"
    post_count: int

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(i for b in self.blogs for i in b.items)


@dataclass(frozen=True)
class Layout:
    sections: tuple[Section, ...]
    post_count: int
    blog_count: int
    level: Level

    @property
    def empty(self) -> bool:
        return self.post_count == 0

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(i for s in self.sections for i in s.items)


@dataclass(frozen=True)
class Grouped:
    """Posts sorted once into sections and blogs; every layout level is cut from this."""

    sections: tuple[tuple[str, tuple[tuple[StoredPost, ...], ...]], ...]
    post_count: int
    blog_count: int


def group(posts: Sequence[StoredPost], sections: frozenset[str] | None = None) -> Grouped:
    """Sections in order (ML, Systems, Other); blogs newest first; posts newest first."""
    chosen = [p for p in posts if sections is None or p.section in sections]
    by_section: dict[str, dict[int, list[StoredPost]]] = {}
    for post in chosen:
        by_section.setdefault(post.section, {}).setdefault(post.feed_id, []).append(post)
    built = []
    for key in SECTION_ORDER:
        if key not in by_section:
            continue
        blogs = [
            tuple(sorted(g, key=lambda p: (post_date(p), p.id), reverse=True))
            for g in by_section[key].values()
        ]
        blogs.sort(key=lambda g: (-post_date(g[0]).timestamp(), g[0].feed_title.lower()))
        built.append((key, tuple(blogs)))
    return Grouped(tuple(built), len(chosen), len({p.feed_id for p in chosen}))


def arrange(
    posts: Sequence[StoredPost] | Grouped, level: Level, sections: frozenset[str] | None = None
) -> Layout:
    """The layout of one level: full items within the caps, the rest named per blog."""
    grouped = posts if isinstance(posts, Grouped) else group(posts, sections)
    built = tuple(_section(key, blogs, level) for key, blogs in grouped.sections)
    return Layout(built, grouped.post_count, grouped.blog_count, level)


def _section(key: str, blogs: tuple[tuple[StoredPost, ...], ...], level: Level) -> Section:
    shown: list[Blog] = []
    left: list[Blog] = []
    budget = level.per_section
    # A quiet week with few blogs shows more of each, up to MAX_PER_BLOG.
    per_blog = max(level.per_blog, min(MAX_PER_BLOG, level.per_section // len(blogs)))
    for posts in blogs:
        take = min(per_blog, budget, len(posts))
        budget -= take
        # Items are built only for what is shown: a busy week has thousands of posts.
        items = tuple(_item(p, level.excerpt_words) for p in posts[:take])
        blog = Blog(
            posts[0].feed_title,
            web_link(posts[0].feed_site_url),
            items,
            len(posts) - take,
            post_date(posts[0]),
        )
        (shown if items else left).append(blog)
    count = sum(len(p) for p in blogs)
    return Section(key, SECTION_TITLES[key], tuple(shown), tuple(left), count)


def _item(post: StoredPost, excerpt_words: int) -> Item:
    return Item(
        title=one_line(post.title) or "(untitled)",
        link=web_link(post.link),
        blog=post.feed_title,
        author=_distinct_author(post.author, post.feed_title),
        date=post_date(post),
        minutes=reading_minutes(post.words or len(post.text.split())),
        excerpt=excerpt(post.text, post.title, excerpt_words),
    )


def web_link(url: str | None) -> str | None:
    """Only http(s) links reach a reader's mail client (no javascript:, data:, file:)."""
    if url and url.lower().startswith(("https://", "http://")):
        return url
    return None


def _distinct_author(author: str | None, blog: str) -> str | None:
    """The author when it tells the reader more than the blog's name does."""
    if not author:
        return None
    a, b = author.strip().lower(), blog.strip().lower()
    return None if not a or a in b or b in a else author.strip()
