"""Pure decisions of an issue: which posts belong to a window, and how they are laid out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from digest.issue.excerpts import excerpt
from digest.issue.inline import Inline
from digest.issue.picks import Score, choose, minutes_of, rank_key
from digest.text import one_line
from digest.types import OTHER, SECTION_ORDER, SECTION_TITLES, StoredPost

FIRST_WINDOW = timedelta(days=7)  # the first issue looks back a week
# A window never reaches further back than this before the send it stands for: after an old
# week sent by hand (`send --as-of` months ago) or a daemon down for a season, the next issue
# holds the last two weeks (a missed week still goes out), not months.
LONGEST_WINDOW = timedelta(days=14)
LATE_GRACE = timedelta(days=7)  # a post first seen late still goes out if no older than this
MAX_PER_BLOG = 3  # newsletter.max_per_blog's default: a blog with more shows "and N more"


@dataclass(frozen=True)
class Window:
    """The time an issue covers: after ``start``, up to and including ``end`` (UTC)."""

    start: datetime
    end: datetime


def window_for(
    end: datetime, previous_ends: Iterable[datetime], scheduled: datetime | None = None
) -> Window:
    """The window ending at ``end`` of the issue that stands for the send at ``scheduled``
    (default: ``end``): from the latest earlier issue's end, but at most LONGEST_WINDOW before
    ``scheduled``; the first issue's a week before ``scheduled``, so a send by hand before
    the scheduled one starts where the scheduled one would."""
    anchor = scheduled or end
    earlier = [e for e in previous_ends if e < end]
    start = max(max(earlier), anchor - LONGEST_WINDOW) if earlier else anchor - FIRST_WINDOW
    if start >= end:  # a send by hand long before a far send time (a monthly cron)
        start = max(earlier) if earlier else end - FIRST_WINDOW
    return Window(start, end)


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
    minutes: int | None  # None: its length is unknown (a teaser whose page wasn't read)
    excerpt: str


@dataclass(frozen=True)
class Line:
    """A post named on one line (a folded blog's other posts): its linked title and day."""

    post_id: int
    title: str
    link: str | None
    date: datetime


@dataclass(frozen=True)
class Pick:
    """One of the week's picks: the post, its section's title, why it was picked and the
    curator's note on it (`digest pick URL --note TEXT`)."""

    item: Item
    section: str
    reason: str
    note: Inline | None = None

    @property
    def says_minutes(self) -> bool:
        """The reason is the reading time ("28 min read"): shown once, as the reason."""
        return self.item.minutes is not None and self.reason == f"{self.item.minutes} min read"


@dataclass(frozen=True)
class Blog:
    """A blog's shown posts, its other posts named one a line, and a count of those the size
    budget left unnamed."""

    title: str
    site_url: str | None
    items: tuple[Item, ...]
    more: int  # posts of this blog in the issue neither shown as items nor listed
    newest: datetime
    listed: tuple[Line, ...] = ()

    @property
    def link(self) -> str | None:
        return self.site_url or (self.items[0].link if self.items else None)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    blogs: tuple[Blog, ...]  # blogs with at least one item shown
    more_blogs: tuple[Blog, ...]  # blogs with no item: their posts listed or counted
    post_count: int  # the section's posts in the issue, its picks included
    picked: int = 0  # of which among the week's picks

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(i for b in self.blogs for i in b.items)

    @property
    def all_picked(self) -> bool:
        """Every post of the section is a pick: its heading stays, pointing up to them."""
        return not self.blogs and not self.more_blogs and self.picked > 0


@dataclass(frozen=True)
class Layout:
    sections: tuple[Section, ...]
    post_count: int
    blog_count: int
    level: Level
    picks: tuple[Pick, ...] = ()
    unlisted: int = 0  # posts that could have been listed but the size budget left out

    @property
    def empty(self) -> bool:
        return self.post_count == 0

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(p.item for p in self.picks) + tuple(i for s in self.sections for i in s.items)

    @property
    def lines(self) -> tuple[Line, ...]:
        return tuple(
            line for s in self.sections for b in s.blogs + s.more_blogs for line in b.listed
        )

    @property
    def lead(self) -> Item | None:
        """The post the issue leads with: the first pick, else the first item."""
        items = self.items
        return items[0] if items else None


@dataclass(frozen=True)
class Ranking:
    """How posts are ordered and picked: their scores (issue/picks.py, by post id), the number
    of picks wanted (newsletter.picks), the most items a blog shows (newsletter.max_per_blog)
    and the curator's notes on picks (by post id)."""

    scores: Mapping[int, Score] = field(default_factory=dict)
    picks: int = 0
    max_per_blog: int = MAX_PER_BLOG
    notes: Mapping[int, Inline] = field(default_factory=dict)


NO_RANKING = Ranking()


@dataclass(frozen=True)
class GroupedSection:
    key: str
    blogs: tuple[tuple[StoredPost, ...], ...]  # best first, each blog's posts best first
    post_count: int  # its picks included
    picked: int = 0


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
            in_picks = sum(1 for p in picks if p.section == key)
            built.append(GroupedSection(key, blogs, counts[key], in_picks))
    blog_count = len({p.feed_id for p in chosen})
    return Grouped(tuple(built), len(chosen), blog_count, picks, ranking)


def may_show(grouped: Grouped) -> list[StoredPost]:
    """The posts some level may show as an item (with an excerpt): the picks, and in each
    section the first posts of its first blogs (a section shows at most the richest level's
    per_section items, at least one from each blog it shows, at most max_per_blog each)."""
    most = max(level.per_section for level in LEVELS)
    per_blog = min(grouped.ranking.max_per_blog, most)
    shown = [p for s in grouped.sections for posts in s.blogs[:most] for p in posts[:per_blog]]
    return [*grouped.picks, *shown]


def with_texts(grouped: Grouped, texts: Mapping[int, str]) -> Grouped:
    """``grouped`` with the posts of ``texts`` given those texts."""

    def texted(posts: tuple[StoredPost, ...]) -> tuple[StoredPost, ...]:
        return tuple(replace(p, text=texts[p.id]) if p.id in texts else p for p in posts)

    sections = tuple(
        replace(s, blogs=tuple(texted(posts) for posts in s.blogs)) for s in grouped.sections
    )
    return replace(grouped, sections=sections, picks=texted(grouped.picks))


def _ranked_blogs(
    blogs: Iterable[list[StoredPost]], scores: Mapping[int, Score]
) -> tuple[tuple[StoredPost, ...], ...]:
    ordered = [tuple(sorted(posts, key=lambda p: rank_key(p, scores))) for posts in blogs]
    ordered.sort(key=lambda g: (rank_key(g[0], scores)[:2], g[0].feed_title.lower()))
    return tuple(ordered)


def arrange(
    posts: Sequence[StoredPost] | Grouped,
    level: Level,
    sections: frozenset[str] | None = None,
    lines: int | None = None,
) -> Layout:
    """The layout of one level: the picks, full items within the caps, and every other post
    named on a line of its own; ``lines`` caps those lines (the size budget trims them from
    the end of the issue), the rest are counted per blog."""
    grouped = posts if isinstance(posts, Grouped) else group(posts, sections)
    cap = grouped.ranking.max_per_blog
    room = _Room(lines)
    built = tuple(_section(s, level, cap, room) for s in grouped.sections)
    picks = tuple(_pick(p, grouped, level) for p in grouped.picks)
    return Layout(
        built, grouped.post_count, grouped.blog_count, level, picks, unlisted=room.left_out
    )


class _Room:
    """Lines left to list, in the issue's order (None: no limit), and those left out."""

    def __init__(self, lines: int | None) -> None:
        self.left = lines
        self.left_out = 0

    def take(self, posts: Sequence[StoredPost]) -> tuple[Line, ...]:
        count = len(posts) if self.left is None else min(self.left, len(posts))
        if self.left is not None:
            self.left -= count
        self.left_out += len(posts) - count
        return tuple(_line(p) for p in posts[:count])


def _pick(post: StoredPost, grouped: Grouped, level: Level) -> Pick:
    scores = grouped.ranking.scores
    why = scores[post.id].reason if post.id in scores else ""
    note = grouped.ranking.notes.get(post.id)
    return Pick(_item(post, level.excerpt_words), SECTION_TITLES[post.section], why, note)


def _section(section: GroupedSection, level: Level, max_per_blog: int, room: _Room) -> Section:
    shown: list[Blog] = []
    left: list[tuple[tuple[StoredPost, ...], Blog]] = []
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
        if items:
            shown.append(_listing(blog, posts[take:], room))
        else:
            left.append((posts, blog))
    # The blogs with no item are listed after those with items, in the same order.
    rest = tuple(_listing(blog, posts, room) for posts, blog in left)
    title = SECTION_TITLES[section.key]
    return Section(section.key, title, tuple(shown), rest, section.post_count, section.picked)


def _listing(blog: Blog, others: Sequence[StoredPost], room: _Room) -> Blog:
    listed = room.take(others)
    return replace(blog, listed=listed, more=len(others) - len(listed))


def _line(post: StoredPost) -> Line:
    return Line(post.id, one_line(post.title) or "(untitled)", web_link(post.link), post_date(post))


def _item(post: StoredPost, excerpt_words: int) -> Item:
    return Item(
        post_id=post.id,
        title=one_line(post.title) or "(untitled)",
        link=web_link(post.link),
        blog=one_line(post.feed_title),
        author=_distinct_author(post.author, post.feed_title),
        date=post_date(post),
        minutes=minutes_of(post),
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
