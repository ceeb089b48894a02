"""Pure polling decisions: a feed's health after a fetch, when to fetch it next, how to merge posts.

No I/O here: every function takes the state and ``now`` and returns the decision, so each rule
is tested by calling it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import Enum
from http import HTTPStatus
from typing import Protocol

from digest.types import FeedStatus, Outcome

BACKOFF_BASE = timedelta(minutes=5)
BACKOFF_CAP = timedelta(days=1)
RETRY_AFTER_CAP = timedelta(days=7)
RETRY_AFTER_MIN = timedelta(minutes=1)
SCHEDULE_JITTER = 0.1  # due_at = now + interval * (1 ± 10%)
BACKOFF_JITTER = 0.1
# Failing this long without a success: worth telling the operator (log, digest feeds, preview).
LONG_FAILING = timedelta(days=7)
# How long each request is remembered (the Fetch rows behind `digest feeds --json`).
FETCH_HISTORY = timedelta(days=14)
FETCH_PRUNE_EVERY = timedelta(days=1)  # how often a poll drops Fetch rows past FETCH_HISTORY

# Health statuses of a feed that is not being read: shown with their error.
FAILING = frozenset({FeedStatus.ERROR, FeedStatus.BACKOFF, FeedStatus.GONE})
# Fetch results that leave a feed healthy.
HEALTHY = frozenset({FeedStatus.OK, FeedStatus.NOT_MODIFIED})

# Statuses that mean "the server asks us to wait" rather than "something is broken".
WAIT_STATUSES = frozenset({429, 503})


class FeedState(Protocol):
    """What the policy reads of a feed (the ORM Feed satisfies it)."""

    @property
    def status(self) -> FeedStatus: ...
    @property
    def error_count(self) -> int: ...
    @property
    def failing_since(self) -> datetime | None: ...
    @property
    def due_at(self) -> datetime | None: ...
    @property
    def next_fetch_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Health:
    """The health fields of a feed after a fetch (copied onto Feed as they are)."""

    status: FeedStatus
    last_status_code: int | None
    last_error: str | None
    error_count: int
    failing_since: datetime | None
    next_fetch_at: datetime | None
    due_at: datetime | None


def outcome_for_status(code: int, retry_after: datetime | None = None) -> Outcome:
    """Classify a final HTTP status that brought no usable body (304, 4xx, 5xx)."""
    if code == 304:
        return Outcome(FeedStatus.NOT_MODIFIED, code)
    if code == 410:
        return Outcome(FeedStatus.GONE, code, "gone (HTTP 410): the feed was removed")
    return Outcome(FeedStatus.ERROR, code, f"HTTP {code} {reason(code)}".rstrip(), retry_after)


def next_health(
    feed: FeedState,
    outcome: Outcome,
    now: datetime,
    poll_interval: timedelta,
    rng: random.Random | None = None,
) -> Health:
    """The feed's health after ``outcome``: status, error streak, hold and schedule."""
    rng = rng or random.Random()
    if outcome.status in HEALTHY:
        return Health(
            status=outcome.status,
            last_status_code=outcome.status_code,
            last_error=None,
            error_count=0,
            failing_since=None,
            next_fetch_at=None,
            due_at=schedule(now, poll_interval, rng),
        )
    failing_since = feed.failing_since or now
    if outcome.status == FeedStatus.GONE:
        # The only permanent stop, and only because the server said so.
        return Health(
            status=FeedStatus.GONE,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
            error_count=feed.error_count + 1,
            failing_since=failing_since,
            next_fetch_at=None,
            due_at=None,
        )
    errors = feed.error_count + 1
    waiting = outcome.status_code in WAIT_STATUSES
    if waiting and outcome.retry_after is not None:
        hold = clamp(outcome.retry_after, now + RETRY_AFTER_MIN, now + RETRY_AFTER_CAP)
    else:
        hold = now + backoff_delay(errors, rng)
    asked_to_wait = outcome.status_code == 429 or (waiting and outcome.retry_after)
    status = FeedStatus.BACKOFF if asked_to_wait else FeedStatus.ERROR
    return Health(
        status=status,
        last_status_code=outcome.status_code,
        last_error=outcome.error or "unknown error",
        error_count=errors,
        failing_since=failing_since,
        next_fetch_at=hold,
        # Retry when the hold ends rather than at the next regular slot.
        due_at=hold,
    )


def backoff_delay(error_count: int, rng: random.Random | None = None) -> timedelta:
    """5 min, 10, 20, ... per consecutive error, capped at a day, with ±10% jitter."""
    rng = rng or random.Random()
    steps = max(0, min(error_count - 1, 20))
    delay: timedelta = min(BACKOFF_BASE * (2**steps), BACKOFF_CAP)
    return delay * rng.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)


def schedule(now: datetime, interval: timedelta, rng: random.Random | None = None) -> datetime:
    """The next regular poll: one interval from now, ±10% so feeds spread out."""
    rng = rng or random.Random()
    return now + interval * rng.uniform(1 - SCHEDULE_JITTER, 1 + SCHEDULE_JITTER)


def spread_times(
    count: int, now: datetime, window: timedelta, rng: random.Random | None = None
) -> list[datetime]:
    """``count`` random times in [now, now + window), earliest first."""
    rng = rng or random.Random()
    return sorted(now + window * rng.random() for _ in range(count))


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """The time a Retry-After header (seconds or an HTTP date) names; None if unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return now + min(timedelta(seconds=int(text)), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return clamp(when.astimezone(UTC), now, now + RETRY_AFTER_CAP)


class Hold(Enum):
    """Why a poll leaves an active feed alone."""

    GONE = "gone"  # answered 410: until `digest feeds retry URL`
    BACKING_OFF = "backing off"  # our own backoff after errors: `digest poll --force` ends it
    ASKED_TO_WAIT = "asked to wait"  # its server's 429 or Retry-After: even --force waits
    NOT_DUE = "not due"  # the daemon's regular schedule (due_only)


def hold(
    feed: FeedState, now: datetime, due_only: bool = False, force: bool = False
) -> Hold | None:
    """Why the feed may not be fetched now (None: it may). ``force`` (`digest poll --force`)
    lifts our own backoff, never a 410 nor a wait the server asked for (status BACKOFF: a 429,
    or a 503 with Retry-After)."""
    if feed.status == FeedStatus.GONE:
        return Hold.GONE
    if feed.next_fetch_at is not None and feed.next_fetch_at > now:
        if feed.status == FeedStatus.BACKOFF:
            return Hold.ASKED_TO_WAIT
        if not force:
            return Hold.BACKING_OFF
    if due_only and not force and feed.due_at is not None and feed.due_at > now:
        return Hold.NOT_DUE
    return None


@dataclass(frozen=True)
class Held:
    """The active feeds a poll left alone, by why; ``until``: when the first of those held
    back (backing off or asked to wait) may be fetched again."""

    counts: Mapping[Hold, int]
    until: datetime | None = None

    def count(self, *why: Hold) -> int:
        return sum(self.counts.get(h, 0) for h in why)


def held(
    feeds: Iterable[FeedState], now: datetime, due_only: bool = False, force: bool = False
) -> Held:
    """Why each of ``feeds`` is left alone (those that may be fetched are not counted)."""
    counts: dict[Hold, int] = {}
    until: datetime | None = None
    for feed in feeds:
        why = hold(feed, now, due_only, force)
        if why is None:
            continue
        counts[why] = counts.get(why, 0) + 1
        if why in (Hold.BACKING_OFF, Hold.ASKED_TO_WAIT) and feed.next_fetch_at is not None:
            until = feed.next_fetch_at if until is None else min(until, feed.next_fetch_at)
    return Held(counts, until)


def is_fetchable(feed: FeedState, now: datetime, due_only: bool = False) -> bool:
    """May the feed be fetched now? Gone: never; held: not yet; due_only: only when due."""
    return hold(feed, now, due_only) is None


def fresh_health() -> Health:
    """A feed's health as if it had never been fetched: `digest feeds retry URL`, and a feed
    put back in the feed list after it was removed (no stale "gone", no backoff left)."""
    return Health(
        status=FeedStatus.NEW,
        last_status_code=None,
        last_error=None,
        error_count=0,
        failing_since=None,
        next_fetch_at=None,
        due_at=None,
    )


def fetch_order(feed: FeedState) -> datetime:
    """Sort key: the feed waiting longest first (never polled feeds first of all)."""
    return feed.due_at or datetime.min.replace(tzinfo=UTC)


def failing_for(feed: FeedState, now: datetime) -> timedelta | None:
    """How long the feed has failed without a success (None when it is fine)."""
    return now - feed.failing_since if feed.failing_since else None


def is_long_failing(feed: FeedState, now: datetime) -> bool:
    """Failing for a week or more: worth telling the operator."""
    since = failing_for(feed, now)
    return since is not None and since >= LONG_FAILING


def clamp(value: datetime, low: datetime, high: datetime) -> datetime:
    return max(low, min(value, high))


def reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


class Merge(Enum):
    """What to do with one parsed entry given the posts already stored for its feed."""

    NEW = "new"
    UPDATE = "update"  # same key, content changed
    UNCHANGED = "unchanged"
    REKEY = "rekey"  # a stored post with the same link under another key: its GUID changed
    DUPLICATE = "duplicate"  # the key came earlier in the same feed: ignored


@dataclass(frozen=True)
class Existing:
    """A stored post as the merge needs it."""

    id: int
    key: str
    link: str | None
    content_hash: str


@dataclass(frozen=True)
class MergeStep:
    action: Merge
    existing: Existing | None
    changed: bool  # content differs from the stored row (always True for NEW)


def plan_merge(
    entries: Iterable[tuple[str, str | None, str]], stored: Mapping[str, Existing]
) -> list[MergeStep]:
    """One step per entry ``(key, link, content_hash)``, in order, given the stored posts by key.

    An entry whose key is unknown but whose link matches a stored post that is no longer in
    the feed under its old key is that post with a changed GUID, not a new post. A key repeated
    in one feed counts once: the first wins, the others are DUPLICATE.
    """
    entries = list(entries)
    present = {key for key, _link, _hash in entries}
    by_link: dict[str, Existing] = {}
    for post in stored.values():
        if post.link and post.key not in present:
            by_link.setdefault(post.link, post)
    seen: set[str] = set()
    steps: list[MergeStep] = []
    for key, link, content_hash in entries:
        if key in seen:
            steps.append(MergeStep(Merge.DUPLICATE, None, False))
            continue
        seen.add(key)
        row = stored.get(key)
        if row is None and link and link in by_link:
            old = by_link.pop(link)
            steps.append(MergeStep(Merge.REKEY, old, old.content_hash != content_hash))
        elif row is None:
            steps.append(MergeStep(Merge.NEW, None, True))
        elif row.content_hash != content_hash:
            steps.append(MergeStep(Merge.UPDATE, row, True))
        else:
            steps.append(MergeStep(Merge.UNCHANGED, row, False))
    return steps


def fetch_prune_due(last: datetime | None, now: datetime) -> bool:
    """Is it time a poll dropped old Fetch rows (``last``: when it last did)?"""
    return last is None or now - last >= FETCH_PRUNE_EVERY
