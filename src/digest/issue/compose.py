"""Pure decisions of an issue: which posts belong to a window, and how they are laid out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digest.issue.excerpts import excerpt
from digest.issue.picks import Score, choose, rank_key
from digest.text import one_line, reading_minutes
from digest.types import OTHER, SECTION_ORDER, SECTION_TITLES, StoredPost

FIRST_WINDOW = timedelta(days=7)  # the first issue looks back a week
LATE_GRACE = timedelta(days=7)  # a post first seen late still goes out if no older than this
MAX_PER_BLOG = 3  # newsletter.max_per_blog's default: a blog with more shows "and N more"


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

    post_id: int
    title: str
    link: str | None
    blog: str
    author: str | None  # only when it is not just the blog's name
    date: datetime
    minutes: int
    excerpt: str


@dataclass(frozen=True)
class Pick:
    """One of the week's picks: the post, its section's title and why it was picked."""

    item: Item
    section: str
    reason: str

    @property
    def says_minutes(self) -> bool:
        """The reason is the reading time ("28 min read"): shown once, as the reason."""
        return self.reason == f"{self.item.minutes} min read"


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
    post_count: int  # the section's posts in the issue, its picks included

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(i for b in self.blogs for i in b.items)


@dataclass(frozen=True)
class Layout:
    sections: tuple[Section, ...]
    post_count: int
    blog_count: int
    level: Level
    picks: tuple[Pick, ...] = ()

    @property
    def empty(self) -> bool:
        return self.post_count == 0

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(p.item for p in self.picks) + tuple(i for s in self.sections for i in s.items)


@dataclass(frozen=True)
class Ranking:
    """How posts are ordered and picked: their scores (issue/picks.py, by post id), the number
    of picks wanted (newsletter.picks) and the most items a blog shows (newsletter.max_per_blog)."""

    scores: Mapping[int, Score] = field(default_factory=dict)
    picks: int = 0
    max_per_blog: int = MAX_PER_BLOG


NO_RANKING = Ranking()


@dataclass(frozen=True)
class GroupedSection:
    key: str
    blogs: tuple[tuple[StoredPost, ...], ...]  # best first, each blog's posts best first
    post_count: int  # its picks included


@dataclass(frozen=True)
class Grouped:
    """Posts sorted once into picks, sections and blogs; every layout level is cut from this."""

    sections: tuple[GroupedSection, ...]
    post_count: int
    blog_count: int
    picks: tuple[StoredPost, ...] = ()
    ranking: Ranking = NO_RANKING


def group(
    posts: Sequence[StoredPost],
    sections: frozenset[str] | None = None,
    ranking: Ranking = NO_RANKING,
) -> Grouped:
    """The picks; then sections in order (ML, Systems, Other), each blog's posts best first
    and blogs by their best post (without scores: newest first), the picks left out."""
    chosen = [p for p in posts if sections is None or p.section in sections]
    picks = choose(chosen, ranking.scores, ranking.picks) if ranking.picks else ()
    picked = {p.id for p in picks}
    by_section: dict[str, dict[int, list[StoredPost]]] = {}
    counts: dict[str, int] = {}
    for post in chosen:
        counts[post.section] = counts.get(post.section, 0) + 1
        if post.id not in picked:
            by_section.setdefault(post.section, {}).setdefault(post.feed_id, []).append(post)
    built = []
    for key in SECTION_ORDER:
        if key in counts:
            blogs = _ranked_blogs(by_section.get(key, {}).values(), ranking.scores)
            built.append(GroupedSection(key, blogs, counts[key]))
    blog_count = len({p.feed_id for p in chosen})
    return Grouped(tuple(built), len(chosen), blog_count, picks, ranking)


def _ranked_blogs(
    blogs: Iterable[list[StoredPost]], scores: Mapping[int, Score]
) -> tuple[tuple[StoredPost, ...], ...]:
    ordered = [tuple(sorted(posts, key=lambda p: rank_key(p, scores))) for posts in blogs]
    ordered.sort(key=lambda g: (rank_key(g[0], scores)[:2], g[0].feed_title.lower()))
    return tuple(ordered)


def arrange(
    posts: Sequence[StoredPost] | Grouped, level: Level, sections: frozenset[str] | None = None
) -> Layout:
    """The layout of one level: the picks, full items within the caps, the rest named per
    blog."""
    grouped = posts if isinstance(posts, Grouped) else group(posts, sections)
    cap = grouped.ranking.max_per_blog
    built = tuple(_section(s, level, cap) for s in grouped.sections)
    picks = tuple(_pick(p, grouped, level) for p in grouped.picks) if level.per_section else ()
    return Layout(built, grouped.post_count, grouped.blog_count, level, picks)


def _pick(post: StoredPost, grouped: Grouped, level: Level) -> Pick:
    scores = grouped.ranking.scores
    why = scores[post.id].reason if post.id in scores else ""
    return Pick(_item(post, level.excerpt_words), SECTION_TITLES[post.section], why)


def _section(section: GroupedSection, level: Level, max_per_blog: int) -> Section:
    shown: list[Blog] = []
    left: list[Blog] = []
    budget = level.per_section
    blogs = section.blogs
    # A quiet week with few blogs shows more of each, up to max_per_blog.
    per_blog = min(max_per_blog, max(level.per_blog, level.per_section // max(1, len(blogs))))
    for posts in blogs:
        take = min(per_blog, budget, len(posts))
        budget -= take
        # Items are built only for what is shown: a busy week has thousands of posts.
        items = tuple(_item(p, level.excerpt_words) for p in posts[:take])
        blog = Blog(
            one_line(posts[0].feed_title),
            web_link(posts[0].feed_site_url),
            items,
            len(posts) - take,
            post_date(posts[0]),
        )
        (shown if items else left).append(blog)
    title = SECTION_TITLES[section.key]
    return Section(section.key, title, tuple(shown), tuple(left), section.post_count)


def _item(post: StoredPost, excerpt_words: int) -> Item:
    return Item(
        post_id=post.id,
        title=one_line(post.title) or "(untitled)",
        link=web_link(post.link),
        blog=one_line(post.feed_title),
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
