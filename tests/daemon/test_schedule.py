"""Send times from newsletter.send_at, the missed-send decision, poll pacing: pure functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import Settings, load_settings
from digest.daemon.schedule import (
    SendAction,
    SendSchedule,
    SendState,
    crontab_weekdays,
    decide_send,
    first_state,
    handled,
    next_send_time,
    poll_tick,
    previous_send_time,
    spread_times,
    start_spread,
    started,
)
from digest.errors import ConfigError

DAY = timedelta(days=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sched(send_at: str, zone: str = "UTC") -> SendSchedule:
    return SendSchedule.parse(send_at, zone)


def settings_with(send_at: str, zone: str = "UTC") -> Settings:
    return load_settings(
        env={"DIGEST_NEWSLETTER_SEND_AT": send_at, "DIGEST_NEWSLETTER_TIMEZONE": zone}
    )


# --- send times ----------------------------------------------------------------------------


def test_weekly_send_time_in_utc() -> None:
    s = sched("saturday 08:00")
    # 2026-11-23 is a Monday.
    assert s.next_after(at("2026-11-23 12:00")) == at("2026-11-28 08:00")
    assert s.latest_until(at("2026-11-23 12:00")) == at("2026-11-21 08:00")
    # Exactly at the send time: it is the latest, and the next one is a week on.
    assert s.latest_until(at("2026-11-28 08:00")) == at("2026-11-28 08:00")
    assert s.next_after(at("2026-11-28 08:00")) == at("2026-12-05 08:00")
    assert s.latest_until(at("2026-11-28 07:59:59.999")) == at("2026-11-21 08:00")


def test_weekly_send_time_follows_the_zone_across_daylight_saving() -> None:
    s = sched("saturday 08:00", "Europe/Berlin")
    # Summer time (UTC+2) until the last Sunday of October, then UTC+1.
    assert s.next_after(at("2026-10-19 00:00")) == at("2026-10-24 06:00")
    assert s.next_after(at("2026-10-26 00:00")) == at("2026-10-31 07:00")
    assert s.latest_until(at("2026-10-26 00:00")) == at("2026-10-24 06:00")
    # And an American zone, spring forward.
    ny = sched("sunday 08:00", "America/New_York")
    assert ny.next_after(at("2026-03-07 00:00")) == at("2026-03-08 12:00")


def test_cron_every_minute() -> None:
    s = sched("cron: * * * * *")
    now = at("2026-11-23 12:00:30.5")
    assert s.latest_until(now) == at("2026-11-23 12:00")
    assert s.next_after(now) == at("2026-11-23 12:01")


def test_cron_weekday_numbers_are_crontab_ones() -> None:
    # crontab: 6 = Saturday, 0 and 7 = Sunday (APScheduler 3 alone would read 6 as Sunday).
    assert sched("cron: 0 8 * * 6").next_after(at("2026-11-23 00:00")) == at("2026-11-28 08:00")
    assert sched("cron: 0 8 * * 0").next_after(at("2026-11-23 00:00")) == at("2026-11-29 08:00")
    assert sched("cron: 0 8 * * 7").next_after(at("2026-11-23 00:00")) == at("2026-11-29 08:00")
    assert sched("cron: 0 8 * * sat").next_after(at("2026-11-23 00:00")) == at("2026-11-28 08:00")
    weekdays = sched("cron: 30 7 * * 1-5")
    assert weekdays.next_after(at("2026-11-27 08:00")) == at("2026-11-30 07:30")  # Fri -> Mon


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("0,7", "sun"),
        ("fri-sun", "sun,fri,sat"),
        ("mon,wed", "mon,wed"),
        ("1/3", "mon,thu"),
    ],
)
def test_crontab_weekdays(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def test_cron_day_and_weekday_both_set_means_either() -> None:
    # crontab: "on the 13th, and on Fridays".
    s = sched("cron: 0 8 13 * 5")
    assert s.next_after(at("2026-11-23 00:00")) == at("2026-11-27 08:00")  # a Friday
    assert s.next_after(at("2026-12-05 00:00")) == at("2026-12-11 08:00")  # Friday before 13th
    assert s.next_after(at("2026-12-11 09:00")) == at("2026-12-13 08:00")  # the 13th, a Sunday


def test_rare_cron_found_far_back() -> None:
    s = sched("cron: 0 8 29 2 *")
    assert s.latest_until(at("2026-11-23 00:00")) == at("2024-02-29 08:00")
    assert s.next_after(at("2026-11-23 00:00")) == at("2028-02-29 08:00")


@pytest.mark.parametrize("send_at", ["cron: 99 * * * *", "cron: * * * * 9", "cron: * * * * xyz"])
def test_bad_cron_is_a_config_error(send_at: str) -> None:
    with pytest.raises(ConfigError, match="newsletter.send_at"):
        sched(send_at)


def test_settings_helpers() -> None:
    settings = settings_with("cron: 0 8 * * sat", "Europe/Berlin")
    assert next_send_time(settings, at("2026-11-23 00:00")) == at("2026-11-28 07:00")
    assert previous_send_time(settings, at("2026-11-23 00:00")) == at("2026-11-21 07:00")


def test_latest_until_is_quick_for_every_minute() -> None:
    import time

    s = sched("cron: * * * * *")
    begin = time.perf_counter()
    for k in range(100):
        s.latest_until(at("2026-11-23 12:00") + timedelta(seconds=k * 7))
    assert time.perf_counter() - begin < 1.0


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
