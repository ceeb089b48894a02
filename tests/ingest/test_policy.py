"""The pure polling decisions: health after a fetch, backoff, Retry-After, schedule, merge."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from digest.ingest import policy
from digest.ingest.policy import Existing, Merge
from digest.types import FeedStatus, Outcome

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class State:
    status: FeedStatus = FeedStatus.NEW
    error_count: int = 0
    failing_since: datetime | None = None
    due_at: datetime | None = None
    next_fetch_at: datetime | None = None


def rng() -> random.Random:
    return random.Random(42)


def test_success_resets_errors_and_schedules_within_ten_percent() -> None:
    state = State(FeedStatus.ERROR, error_count=3, failing_since=NOW - timedelta(days=2))
    h = policy.next_health(state, Outcome(FeedStatus.OK, 200), NOW, HOUR, rng())
    assert (h.status, h.error_count, h.failing_since, h.next_fetch_at, h.last_error) == (
        FeedStatus.OK,
        0,
        None,
        None,
        None,
    )
    assert h.due_at is not None
    assert NOW + HOUR * 0.9 <= h.due_at <= NOW + HOUR * 1.1


def test_schedule_is_jittered() -> None:
    r = random.Random(1)
    times = {policy.schedule(NOW, HOUR, r) for _ in range(20)}
    assert len(times) > 1
    assert all(NOW + timedelta(minutes=54) <= t <= NOW + timedelta(minutes=66) for t in times)


def test_not_modified_is_healthy() -> None:
    h = policy.next_health(
        State(FeedStatus.OK), Outcome(FeedStatus.NOT_MODIFIED, 304), NOW, HOUR, rng()
    )
    assert h.status == FeedStatus.NOT_MODIFIED and h.error_count == 0 and h.next_fetch_at is None


def test_errors_back_off_exponentially_and_are_capped_at_a_day() -> None:
    state = State(FeedStatus.OK)
    holds = []
    for _ in range(12):
        outcome = policy.outcome_for_status(500)
        h = policy.next_health(state, outcome, NOW, HOUR, rng())
        assert h.status == FeedStatus.ERROR and h.last_error == "HTTP 500 Internal Server Error"
        assert h.next_fetch_at is not None and h.due_at == h.next_fetch_at
        holds.append(h.next_fetch_at - NOW)
        state = State(h.status, h.error_count, h.failing_since, h.due_at, h.next_fetch_at)
    assert timedelta(minutes=4.5) <= holds[0] <= timedelta(minutes=5.5)
    assert timedelta(minutes=9) <= holds[1] <= timedelta(minutes=11)
    assert all(b > a for a, b in zip(holds[:8], holds[1:9], strict=True))
    assert max(holds) <= timedelta(days=1) * 1.1
    assert holds[-1] >= timedelta(days=1) * 0.9  # never a silent permanent stop either
    assert state.failing_since == NOW and state.error_count == 12


def test_failing_since_is_kept_through_an_error_streak() -> None:
    since = NOW - timedelta(days=8)
    h = policy.next_health(
        State(FeedStatus.ERROR, 5, since), policy.outcome_for_status(404), NOW, HOUR, rng()
    )
    assert h.failing_since == since and h.error_count == 6
    assert policy.is_long_failing(State(FeedStatus.ERROR, 6, since), NOW)
    assert not policy.is_long_failing(State(FeedStatus.ERROR, 6, NOW - timedelta(days=6)), NOW)
    assert not policy.is_long_failing(State(FeedStatus.OK), NOW)


def test_gone_is_the_only_permanent_stop() -> None:
    h = policy.next_health(State(FeedStatus.OK), policy.outcome_for_status(410), NOW, HOUR, rng())
    assert h.status == FeedStatus.GONE and h.next_fetch_at is None and h.due_at is None
    assert "410" in (h.last_error or "")
    assert not policy.is_fetchable(State(FeedStatus.GONE), NOW + timedelta(days=365))


def test_429_honours_retry_after() -> None:
    outcome = policy.outcome_for_status(429, NOW + timedelta(seconds=120))
    h = policy.next_health(State(FeedStatus.OK), outcome, NOW, HOUR, rng())
    assert h.status == FeedStatus.BACKOFF
    assert h.next_fetch_at == NOW + timedelta(seconds=120)


def test_429_without_retry_after_backs_off_exponentially() -> None:
    h = policy.next_health(State(FeedStatus.OK), policy.outcome_for_status(429), NOW, HOUR, rng())
    assert h.status == FeedStatus.BACKOFF
    assert h.next_fetch_at is not None
    assert timedelta(minutes=4) < h.next_fetch_at - NOW < timedelta(minutes=6)


def test_503_with_retry_after_is_a_backoff_and_retry_after_is_capped() -> None:
    outcome = policy.outcome_for_status(503, NOW + timedelta(days=60))
    h = policy.next_health(State(FeedStatus.OK), outcome, NOW, HOUR, rng())
    assert h.status == FeedStatus.BACKOFF and h.next_fetch_at == NOW + timedelta(days=7)


def test_retry_after_on_a_404_is_ignored() -> None:
    outcome = policy.outcome_for_status(404, NOW + timedelta(days=3))
    h = policy.next_health(State(FeedStatus.OK), outcome, NOW, HOUR, rng())
    assert h.status == FeedStatus.ERROR
    assert h.next_fetch_at is not None and h.next_fetch_at - NOW < timedelta(minutes=6)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        (" 0 ", NOW),
        ("Sun, 01 Mar 2026 13:30:00 GMT", NOW + timedelta(minutes=90)),
        ("Sun, 01 Mar 2026 11:00:00 GMT", NOW),  # in the past: now
        ("Wed, 01 Jul 2026 00:00:00 GMT", NOW + timedelta(days=7)),  # capped
        ("99999999", NOW + timedelta(days=7)),
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: datetime | None) -> None:
    assert policy.parse_retry_after(value, NOW) == expected


def test_retry_after_zero_still_holds_a_minute() -> None:
    outcome = policy.outcome_for_status(429, NOW)
    h = policy.next_health(State(FeedStatus.OK), outcome, NOW, HOUR, rng())
    assert h.next_fetch_at == NOW + timedelta(minutes=1)


def test_is_fetchable() -> None:
    assert policy.is_fetchable(State(), NOW)
    assert policy.is_fetchable(State(), NOW, due_only=True)
    held = State(FeedStatus.ERROR, next_fetch_at=NOW + timedelta(minutes=1))
    assert not policy.is_fetchable(held, NOW)
    assert policy.is_fetchable(held, NOW + timedelta(minutes=2))
    later = State(FeedStatus.OK, due_at=NOW + HOUR)
    assert policy.is_fetchable(later, NOW)  # a manual poll ignores the schedule
    assert not policy.is_fetchable(later, NOW, due_only=True)
    assert policy.is_fetchable(later, NOW + HOUR, due_only=True)


def test_force_lifts_our_backoff_never_a_410_nor_the_servers_wait() -> None:
    ours = State(FeedStatus.ERROR, error_count=2, next_fetch_at=NOW + HOUR)  # a 503, no header
    asked = State(FeedStatus.BACKOFF, error_count=1, next_fetch_at=NOW + 2 * HOUR)  # Retry-After
    gone = State(FeedStatus.GONE, error_count=1)
    assert policy.hold(ours, NOW) is policy.Hold.BACKING_OFF
    assert policy.hold(ours, NOW, force=True) is None
    assert policy.hold(asked, NOW, force=True) is policy.Hold.ASKED_TO_WAIT
    assert policy.hold(gone, NOW, force=True) is policy.Hold.GONE
    assert policy.hold(asked, NOW + 3 * HOUR, force=True) is None  # its wait is over


def test_held_counts_why_and_names_the_first_time_one_may_be_fetched() -> None:
    feeds = [
        State(FeedStatus.ERROR, next_fetch_at=NOW + 2 * HOUR),
        State(FeedStatus.BACKOFF, next_fetch_at=NOW + HOUR),
        State(FeedStatus.GONE),
        State(FeedStatus.OK),
    ]
    held = policy.held(feeds, NOW)
    assert dict(held.counts) == {
        policy.Hold.BACKING_OFF: 1,
        policy.Hold.ASKED_TO_WAIT: 1,
        policy.Hold.GONE: 1,
    }
    assert held.until == NOW + HOUR
    forced = policy.held(feeds, NOW, force=True)
    assert forced.count(policy.Hold.BACKING_OFF) == 0 and forced.until == NOW + HOUR
    assert policy.held([State(FeedStatus.OK)], NOW) == policy.Held({}, None)


def test_fresh_health_is_a_feed_never_fetched() -> None:
    h = policy.fresh_health()
    assert (h.status, h.error_count, h.last_error, h.failing_since) == (
        FeedStatus.NEW,
        0,
        None,
        None,
    )
    assert (h.next_fetch_at, h.due_at) == (None, None)
    assert policy.hold(State(h.status, h.error_count, h.failing_since, h.due_at), NOW) is None


def test_fetch_order_puts_never_polled_and_longest_waiting_first() -> None:
    feeds = [State(due_at=NOW), State(due_at=None), State(due_at=NOW - HOUR)]
    ordered = sorted(feeds, key=policy.fetch_order)
    assert [f.due_at for f in ordered] == [None, NOW - HOUR, NOW]


def stored(*rows: tuple[int, str, str | None, str]) -> dict[str, Existing]:
    return {key: Existing(i, key, link, h) for i, key, link, h in rows}


def test_merge_new_updated_unchanged() -> None:
    have = stored((1, "a", "https://x/a", "h1"), (2, "b", "https://x/b", "h2"))
    steps = policy.plan_merge(
        [("a", "https://x/a", "h1"), ("b", "https://x/b", "CHANGED"), ("c", "https://x/c", "h3")],
        have,
    )
    assert [s.action for s in steps] == [Merge.UNCHANGED, Merge.UPDATE, Merge.NEW]
    assert steps[1].existing == have["b"] and steps[1].changed


def test_merge_guid_change_with_same_link_is_a_rekey_not_a_new_post() -> None:
    have = stored((7, "old-guid", "https://x/a", "h1"))
    [step] = policy.plan_merge([("new-guid", "https://x/a", "h1")], have)
    assert step.action is Merge.REKEY and step.existing == have["old-guid"] and not step.changed
    [step] = policy.plan_merge([("new-guid", "https://x/a", "h9")], have)
    assert step.action is Merge.REKEY and step.changed


def test_merge_same_link_under_a_key_still_present_is_a_new_post() -> None:
    # Two entries may share a link (e.g. a link blog); only a vanished key can be a GUID change.
    have = stored((7, "a", "https://x/same", "h1"))
    steps = policy.plan_merge([("a", "https://x/same", "h1"), ("b", "https://x/same", "h2")], have)
    assert [s.action for s in steps] == [Merge.UNCHANGED, Merge.NEW]


def test_merge_repeated_key_counts_once() -> None:
    steps = policy.plan_merge([("a", None, "h1"), ("a", None, "h2")], {})
    assert [s.action for s in steps] == [Merge.NEW, Merge.DUPLICATE]
