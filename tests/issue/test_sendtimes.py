"""Send times from newsletter.send_at in newsletter.timezone: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.config import Settings
from digest.configfile import load_settings
from digest.errors import ConfigError
from digest.issue.sendtimes import (
    SendSchedule,
    crontab_weekdays,
    next_send_time,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sched(send_at: str, zone: str = "UTC") -> SendSchedule:
    return SendSchedule.parse(send_at, zone)


def settings_with(send_at: str, zone: str = "UTC") -> Settings:
    return load_settings(
        env={"DIGEST_NEWSLETTER_SEND_AT": send_at, "DIGEST_NEWSLETTER_TIMEZONE": zone}
    )


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
    assert SendSchedule.from_settings(settings).latest_until(at("2026-11-23 00:00")) == at(
        "2026-11-21 07:00"
    )


def test_latest_until_is_quick_for_every_minute() -> None:
    import time

    s = sched("cron: * * * * *")
    begin = time.perf_counter()
    for k in range(100):
        s.latest_until(at("2026-11-23 12:00") + timedelta(seconds=k * 7))
    assert time.perf_counter() - begin < 1.0
