"""When issues go out: send times from ``newsletter.send_at`` in ``newsletter.timezone``.

Pure: no I/O and no clock; every function takes the times it reasons about. An issue's window
ends at a send time (plan.default_as_of); the daemon fires at them (daemon.schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from digest.config import Settings
from digest.errors import ConfigError

# crontab numbers its weekdays from Sunday = 0 (7 is Sunday too); APScheduler 3 from Monday = 0.
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# How far back to look for the previous send time, widening until one is found.
_LOOKBACK = tuple(
    timedelta(days=d) for d in (1 / 720, 1 / 12, 2, 9, 40, 400, 3000)
)  # 2 min .. ~8 years (a cron of "0 8 29 2 *" fires once in four years)


@dataclass(frozen=True)
class SendSchedule:
    """When issues go out: ``newsletter.send_at`` read in ``newsletter.timezone``."""

    send_at: str
    timezone: str
    trigger: BaseTrigger

    @classmethod
    def parse(cls, send_at: str, timezone: str) -> SendSchedule:
        """Raises ConfigError for a send_at that names no time (a bad cron field)."""
        return cls(send_at, timezone, send_trigger(send_at, timezone))

    @classmethod
    def from_settings(cls, settings: Settings) -> SendSchedule:
        return cls.parse(settings.newsletter.send_at, settings.newsletter.timezone)

    def next_after(self, when: datetime) -> datetime | None:
        """The first send time strictly after ``when`` (UTC); None if there is none."""
        return self._first_from(when + timedelta(microseconds=1))

    def latest_until(self, when: datetime) -> datetime | None:
        """The last send time at or before ``when`` (UTC); None if none in the last ~8 years."""
        # Send times fall on whole seconds, so searching whole seconds loses nothing.
        until = when.astimezone(UTC).replace(microsecond=0)
        for window in _LOOKBACK:
            low = until - window
            first = self._first_from(low)
            if first is not None and first <= until:
                break
        else:
            return None
        # Bisect for the latest start whose first send is still <= until: that send is the last.
        lo, hi = 0, int(window.total_seconds())
        while lo < hi:
            mid = (lo + hi + 1) // 2
            found = self._first_from(low + timedelta(seconds=mid))
            if found is not None and found <= until:
                lo = mid
            else:
                hi = mid - 1
        return self._first_from(low + timedelta(seconds=lo))

    def describe(self) -> str:
        return f"{self.send_at} ({self.timezone})"

    def _first_from(self, when: datetime) -> datetime | None:
        """The first send time at or after ``when``."""
        fire: datetime | None = self.trigger.get_next_fire_time(None, when.astimezone(UTC))
        return fire.astimezone(UTC) if fire is not None else None


def next_send_time(settings: Settings, after: datetime) -> datetime:
    """The first send time strictly after ``after``, in UTC. Raises ConfigError if none."""
    found = SendSchedule.from_settings(settings).next_after(after)
    if found is None:
        raise ConfigError(
            f"newsletter.send_at: {settings.newsletter.send_at!r} names no future time"
        )
    return found


def previous_send_time(settings: Settings, until: datetime) -> datetime | None:
    """The last send time at or before ``until``, in UTC (None if none in ~8 years)."""
    return SendSchedule.from_settings(settings).latest_until(until)


@dataclass(frozen=True)
class SendWords:
    """When issues come, as a reader reads it (when_issues_come)."""

    weekday: str | None  # "Saturday" for a weekday schedule; None for a cron one
    clock: str  # "8:00"
    zone: str  # "UTC", "London time"
    next_day: str | None  # "Saturday 12 December"; None when no send time is ahead

    @property
    def schedule(self) -> str:
        """ "every Saturday at 8:00 (London time); the next one on Saturday 12 December"."""
        if self.next_day is None:
            return "when the next one is ready"
        if self.weekday is None:
            return f"next on {self.next_day} at {self.clock} ({self.zone})"
        every = f"every {self.weekday} at {self.clock} ({self.zone})"
        return f"{every}; the next one on {self.next_day}"

    @property
    def first(self) -> str:
        """ "on Saturday 12 December at 8:00 (London time), and then every Saturday"."""
        if self.next_day is None:
            return "when the next one is ready"
        then = f", and then every {self.weekday}" if self.weekday else ""
        return f"on {self.next_day} at {self.clock} ({self.zone}){then}"


def when_issues_come(send_at: str, timezone: str, now: datetime) -> SendWords:
    """When issues come after ``now``, in a reader's words (a cron schedule names only the
    next one)."""
    upcoming = SendSchedule.parse(send_at, timezone).next_after(now)
    zone = "UTC" if timezone.upper() in ("UTC", "ETC/UTC") else f"{_place(timezone)} time"
    local = upcoming.astimezone(ZoneInfo(timezone)) if upcoming else None
    return SendWords(
        weekday=None if send_at.startswith("cron:") or local is None else f"{local:%A}",
        clock=f"{local.hour}:{local:%M}" if local else "",
        zone=zone,
        next_day=f"{local:%A} {local.day} {local:%B}" if local else None,
    )


def _place(timezone: str) -> str:
    """ "Europe/Berlin" as "Berlin", "America/New_York" as "New York"."""
    return timezone.rpartition("/")[2].replace("_", " ")


def send_trigger(send_at: str, timezone: str) -> BaseTrigger:
    """An APScheduler trigger for ``saturday 08:00`` or ``cron: MIN HOUR DAY MONTH WEEKDAY``."""
    zone = ZoneInfo(timezone)
    text = send_at.strip().lower()
    try:
        if text.startswith("cron:"):
            return _cron_trigger(text[5:].split(), zone)
        day, _, clock = text.partition(" ")
        hour, _, minute = clock.partition(":")
        return CronTrigger(
            day_of_week=day[:3], hour=int(hour), minute=int(minute), second=0, timezone=zone
        )
    except ValueError as e:
        raise ConfigError(f"newsletter.send_at: cannot use {send_at!r}: {e}") from None


def _cron_trigger(fields: list[str], zone: ZoneInfo) -> BaseTrigger:
    if len(fields) != 5:
        raise ValueError("a cron expression has five fields: MIN HOUR DAY MONTH WEEKDAY")
    minute, hour, day, month, weekday = fields
    weekdays = crontab_weekdays(weekday)

    def cron(day: str, day_of_week: str) -> CronTrigger:
        return CronTrigger(
            month=month,
            day=day,
            day_of_week=day_of_week,
            hour=hour,
            minute=minute,
            second=0,
            timezone=zone,
        )

    if day.startswith("*") or weekday.startswith("*"):
        return cron(day, weekdays)
    # crontab fires when the day of the month OR the weekday matches if both are restricted.
    return OrTrigger([cron(day, "*"), cron("*", weekdays)])


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field (0 or 7 = Sunday, names, ranges, steps) as APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        body, slash, step_text = item.partition("/")
        step = _number(step_text, "step") if slash else 1
        if step < 1:
            raise ValueError(f"bad step in weekday field {field!r}")
        if body == "*":
            low, high = 0, 6
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = _weekday(first), _weekday(last)
            if high == 0 and low > 0:  # "fri-sun": Sunday closes the week
                high = 7
        else:
            low = _weekday(body)
            high = 6 if slash else low  # crontab: "1/2" means "1-6/2"
        if low > high:
            raise ValueError(f"backward range in weekday field {field!r}")
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if number > 7:
            raise ValueError(f"weekday {number} is not 0-7")
        return number
    for index, name in enumerate(_WEEKDAYS):
        if len(text) >= 3 and name == text[:3]:
            return index
    raise ValueError(f"unknown weekday {text!r}")


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad {what} {text!r}")
    return int(text)
