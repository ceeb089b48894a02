"""The week's picks: each post's score from what digest has stored, and the few posts that
lead the issue (no I/O; issue/signals.py reads the stored data).

    score = rarity + 1.5 × links + length        (each part between 0 and 1)

- rarity: how seldom the blog posts. Its stored posts dated in the 180 days up to the issue's
  end, per 30 days of that history (the history counted from its oldest such post, and at
  least 30 days): 1 for a post a month or fewer, else 1/√(posts a month): weekly 0.48,
  daily 0.18, thirty a week 0.09.
- links: n/(n+1) for n other blogs on the list whose posts, dated in this issue's window or
  the one before, link to the post or to its canonical URL: 0.5 for one, 0.75 for three.
- length: log(1 + minutes)/log(61), at most 1: 1 min 0.17, 5 min 0.44, 20 min 0.74, 60 min 1.
  A post whose length is unknown (a teaser whose page wasn't read) gets the week's median
  length: neither the bonus of a long read nor the penalty of a note.
- the curator: `digest pick URL` puts a post among the picks whatever its score (+10);
  `digest skip URL` keeps the post out of the issue (plan.py; its score here is 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from digest.text import reading_minutes
from digest.types import StoredPost, Verdict

HISTORY = timedelta(days=180)  # how far back a blog's posts are counted for its rarity
MONTH_DAYS = 30
LINKS_WEIGHT = 1.5  # three blogs linking to a post say more than its length or its blog's pace
FULL_LENGTH_MINUTES = 60
_FULL_LENGTH = math.log1p(FULL_LENGTH_MINUTES)
PICK_BONUS = 10.0
QUIET_MONTHS = 2  # "first post in N months" from this long a silence
POSTS_PER_PICK = 4  # a short week gets fewer picks: 3 posts none, 8 posts two
PACES = (  # a blog's posts a month, in words (a rarity reason without a long silence)
    (1.5, "posts about once a month"),
    (3.0, "posts about twice a month"),
    (6.0, "posts about once a week"),
    (16.0, "posts a few times a week"),
)


@dataclass(frozen=True)
class BlogHistory:
    """A blog's stored posts around an issue."""

    posts: int  # dated in the HISTORY up to the end, this week's included
    days: float  # from the oldest of those to the end
    previous: datetime | None = None  # its latest post dated before the window


@dataclass(frozen=True)
class Signals:
    """What the scores read, as issue/signals.py loads it."""

    blogs: Mapping[int, BlogHistory]  # by feed id
    linked_by: Mapping[str, frozenset[int]]  # canonical URL -> the feeds whose posts link to it
    verdicts: Mapping[str, Verdict]  # canonical URL -> the curator's word for this issue


class Score(NamedTuple):
    """A post's score, its parts and the signals behind them (a tuple: thousands are made per
    issue, four times faster to make than a frozen dataclass)."""

    total: float
    rarity: float
    links: float
    length: float
    curator: Verdict | None
    posts_180_days: int
    per_month: float  # the blog's posts a month, as rarity reads them
    linked_by: int
    minutes: int | None  # None: unknown (a teaser whose page wasn't read)
    months_quiet: int | None  # months since the blog's previous post, when one is stored

    @property
    def reason(self) -> str:
        """The strongest part of the score, in words: a pick's one-line reason."""
        if self.curator is Verdict.PICK:
            return "the editor's pick"
        links = LINKS_WEIGHT * self.links
        if self.linked_by and links >= max(self.rarity, self.length):
            blogs = "blog" if self.linked_by == 1 else "blogs"
            return f"linked by {self.linked_by} {blogs} on the list"
        if self.minutes is not None and self.length > self.rarity:
            return f"{self.minutes} min read"
        if self.months_quiet is not None and self.months_quiet >= QUIET_MONTHS:
            return f"first post in {self.months_quiet} months"
        return _pace(self.per_month)

    def as_json(self) -> dict[str, object]:
        return {
            "score": round(self.total, 3),
            "reason": self.reason,
            "parts": {
                "rarity": round(self.rarity, 3),
                "links": round(LINKS_WEIGHT * self.links, 3),
                "length": round(self.length, 3),
                "curator": self.curator.value if self.curator else None,
            },
            "signals": {
                "posts_180_days": self.posts_180_days,
                "linked_by_blogs": self.linked_by,
                "minutes": self.minutes,
                "months_since_previous_post": self.months_quiet,
            },
        }


NO_SCORE = Score(0.0, 0.0, 0.0, 0.0, None, 0, 0.0, 0, None, None)
_ONE_POST = BlogHistory(1, 0.0)


def score_posts(posts: Sequence[StoredPost], signals: Signals) -> dict[int, Score]:
    """Every post's Score, by post id (a blog's pace worked out once for all its posts; the
    week's median length once for the posts whose length is unknown)."""
    paces: dict[int, tuple[BlogHistory, float, float]] = {}
    minutes = [minutes_of(p) for p in posts]
    known = [length(m) for m in minutes if m is not None]
    median = _median(known)
    scores = {}
    for post, read in zip(posts, minutes, strict=True):
        pace = paces.get(post.feed_id)
        if pace is None:
            pace = paces[post.feed_id] = _pace_of(signals.blogs.get(post.feed_id, _ONE_POST))
        scores[post.id] = _score(post, signals, *pace, median, read)
    return scores


def score(post: StoredPost, signals: Signals, median: float = 0.0) -> Score:
    """One post's Score (``median``: the length part of a post whose length is unknown)."""
    pace = _pace_of(signals.blogs.get(post.feed_id, _ONE_POST))
    return _score(post, signals, *pace, median, minutes_of(post))


def _median(values: list[float]) -> float:
    """The middle value (statistics.median, without importing statistics: 30 ms a command)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def minutes_of(post: StoredPost) -> int | None:
    """Its reading time; None when its length is unknown."""
    if post.words is None:
        return None
    return reading_minutes(post.words or len(post.text.split()))


def _pace_of(history: BlogHistory) -> tuple[BlogHistory, float, float]:
    per_month = posts_a_month(history)
    return history, per_month, rarity_of(per_month)


def _score(
    post: StoredPost,
    signals: Signals,
    history: BlogHistory,
    per_month: float,
    rare: float,
    median: float,
    minutes: int | None,
) -> Score:
    key = post.canonical_url or ""
    linking = signals.linked_by.get(key) if key else None
    linked_by = len(linking - {post.feed_id}) if linking else 0
    verdict = signals.verdicts.get(key) if key and signals.verdicts else None
    parts = (rare, linked_by / (linked_by + 1), median if minutes is None else length(minutes))
    total = parts[0] + LINKS_WEIGHT * parts[1] + parts[2]
    if verdict is Verdict.PICK:
        total += PICK_BONUS
    elif verdict is Verdict.SKIP:
        total = 0.0
    quiet = _months_quiet(post, history)
    return Score(total, *parts, verdict, history.posts, per_month, linked_by, minutes, quiet)


def posts_a_month(history: BlogHistory) -> float:
    return history.posts * MONTH_DAYS / max(MONTH_DAYS, history.days)


def rarity(history: BlogHistory) -> float:
    return rarity_of(posts_a_month(history))


def rarity_of(per_month: float) -> float:
    return min(1.0, 1 / math.sqrt(per_month)) if per_month > 0 else 1.0


def length(minutes: int) -> float:
    return min(1.0, math.log1p(minutes) / _FULL_LENGTH)


def _pace(per_month: float) -> str:
    for most, words in PACES:
        if per_month <= most:
            return words
    return "posts most days"


def _months_quiet(post: StoredPost, history: BlogHistory) -> int | None:
    date = post.date or post.first_seen
    if history.previous is None or history.previous >= date:
        return None
    return int((date - history.previous).days // MONTH_DAYS)


# ---- choosing -----------------------------------------------------------------------------


def pick_count(wanted: int, posts: int, curator_picks: int) -> int:
    """How many picks an issue of ``posts`` posts shows (``wanted``: newsletter.picks)."""
    return min(wanted, max(posts // POSTS_PER_PICK, curator_picks))


def rank_key(post: StoredPost, scores: Mapping[int, Score]) -> tuple[float, float, int]:
    """Best first: by score, then newest, then the later id."""
    total = scores[post.id].total if post.id in scores else 0.0
    return (-total, -(post.date or post.first_seen).timestamp(), -post.id)


def choose(
    posts: Sequence[StoredPost], scores: Mapping[int, Score], wanted: int
) -> tuple[StoredPost, ...]:
    """The picks: the curator's, then the best scores, one per blog; none a curator skipped."""
    ranked = sorted(posts, key=lambda p: rank_key(p, scores))
    verdicts = {p.id: scores[p.id].curator if p.id in scores else None for p in ranked}
    curated = [p for p in ranked if verdicts[p.id] is Verdict.PICK]
    count = pick_count(wanted, len(posts), len(curated))
    picks = curated[:count]
    blogs = {p.feed_id for p in picks}
    for post in ranked:
        if len(picks) >= count:
            break
        if verdicts[post.id] is None and post.feed_id not in blogs:
            picks.append(post)
            blogs.add(post.feed_id)
    return tuple(sorted(picks, key=lambda p: rank_key(p, scores)))
