"""The missed-send decision and poll pacing: pure functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from digest.daemon.schedule import (
    SendAction,
    SendState,
    decide_send,
    first_state,
    handled,
    poll_tick,
    start_spread,
    started,
)
from digest.ingest.policy import spread_times

DAY = timedelta(days=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the send decision ---------------------------------------------------------------------


GRACE = DAY


def test_fresh_database_has_missed_nothing() -> None:
    now = at("2026-11-28 10:00")
    latest = at("2026-11-28 08:00")  # two hours ago, well within grace
    state = first_state(now, latest)
    assert state == SendState(last_due=latest)
    assert decide_send(now, state, latest, GRACE) is None
    assert decide_send(now, SendState(), latest, GRACE) is None


def test_on_time_send_runs_once() -> None:
    state = SendState(last_due=at("2026-11-21 08:00"))
    due = at("2026-11-28 08:00")
    assert decide_send(due, state, due, GRACE) == SendAction("send", due)
    done = handled(started(state, due), due)
    assert done == SendState(last_due=due)
    # The restart a minute later sends nothing again.
    assert decide_send(due + timedelta(minutes=1), done, due, GRACE) is None


def test_missed_send_within_grace_runs_once_at_start() -> None:
    state = SendState(last_due=at("2026-11-21 08:00"))
    due = at("2026-11-28 08:00")
    now = due + timedelta(hours=20)
    assert decide_send(now, state, due, GRACE) == SendAction("send", due)


def test_missed_send_older_than_grace_is_skipped() -> None:
    state = SendState(last_due=at("2026-11-21 08:00"))
    due = at("2026-11-28 08:00")
    now = due + timedelta(hours=25)
    assert decide_send(now, state, due, GRACE) == SendAction("skip", due)
    assert handled(state, due) == SendState(last_due=due)


def test_many_missed_sends_run_the_latest_once() -> None:
    # Down for five minutes with a send every minute: one send, for the latest time.
    state = SendState(last_due=at("2026-11-23 12:00"))
    now = at("2026-11-23 12:05:10")
    assert decide_send(now, state, at("2026-11-23 12:05"), GRACE) == SendAction(
        "send", at("2026-11-23 12:05")
    )


def test_interrupted_send_is_resumed_first() -> None:
    due = at("2026-11-23 12:00")
    state = started(SendState(last_due=at("2026-11-23 11:59")), due)
    now = at("2026-11-23 12:03")
    assert decide_send(now, state, at("2026-11-23 12:03"), GRACE) == SendAction(
        "send", due, resume=True
    )
    # Once it is done, the latest missed one follows.
    after = handled(state, due)
    assert decide_send(now, after, at("2026-11-23 12:03"), GRACE) == SendAction(
        "send", at("2026-11-23 12:03")
    )


def test_interrupted_send_older_than_grace_is_given_up() -> None:
    due = at("2026-11-21 08:00")
    state = started(SendState(last_due=at("2026-11-14 08:00")), due)
    now = due + timedelta(days=2)
    assert decide_send(now, state, due, GRACE) == SendAction("skip", due, resume=True)


def test_state_never_moves_backwards_and_round_trips() -> None:
    state = SendState(last_due=at("2026-11-28 08:00"))
    assert handled(state, at("2026-11-21 08:00")).last_due == at("2026-11-28 08:00")
    again = started(state, at("2026-12-05 08:00"))
    assert SendState.from_json(again.to_json()) == again
    assert SendState.from_json(None) is None
    assert SendState.from_json("not json") is None
    assert SendState.from_json('{"last_due": "yesterday"}') is None


def test_clock_set_back_sends_nothing() -> None:
    state = SendState(last_due=at("2026-11-28 08:00"))
    now = at("2026-11-27 09:00")
    assert decide_send(now, state, at("2026-11-21 08:00"), GRACE) is None


# --- poll pacing ---------------------------------------------------------------------------


def test_poll_tick() -> None:
    assert poll_tick(timedelta(seconds=10)) == timedelta(seconds=1)
    assert poll_tick(timedelta(seconds=2)) == timedelta(seconds=1)
    assert poll_tick(timedelta(minutes=2)) == timedelta(seconds=12)
    assert poll_tick(timedelta(hours=1)) == timedelta(seconds=30)


def test_start_spread_and_times() -> None:
    assert start_spread(timedelta(seconds=10)) == timedelta(seconds=10)
    assert start_spread(timedelta(hours=1)) == timedelta(minutes=10)
    now = at("2026-11-23 12:00")
    times = spread_times(1000, now, timedelta(minutes=10), random.Random(1))
    assert times == sorted(times)
    assert now <= times[0] and times[-1] < now + timedelta(minutes=10)
    # Spread out, not bunched: each minute of the window gets some.
    minutes = {int((t - now).total_seconds() // 60) for t in times}
    assert minutes == set(range(10))
