"""What an issue reads of the settings, as one small record (issue 20: delivery hands issue/
this, not the whole Settings, and nothing below climbs back up for another value); and where
an issue's window ends, the same for `digest preview` and `digest send` at one moment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from digest.config import Settings
from digest.errors import ConfigError, InputError

if TYPE_CHECKING:
    from digest.issue.render import Renderer
    from digest.issue.sendtimes import SendSchedule

# --as-of outside these years is a typo, not a week: datetime overflows near its limits
# (0001-01-06 less a week, 9999-12-31 plus the next send).
EARLIEST_YEAR = 1970
LATEST_YEAR = 9000
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Newsletter:
    """The newsletter as planning, recording and rendering an issue see it."""

    title: str
    base_url: str
    timezone: ZoneInfo
    send_at: str
    templates: Path | None
    max_kb: int
    picks: int
    max_per_blog: int
    subject: str
    postal_address: str
    signup: bool  # the sign-up form is open: "Forwarded this? Subscribe"

    @classmethod
    def of(cls, settings: Settings | Newsletter) -> Newsletter:
        """The record of ``settings`` (a record is returned as it is)."""
        if isinstance(settings, Newsletter):
            return settings
        nl = settings.newsletter
        return cls(
            title=nl.title,
            base_url=nl.base_url,
            timezone=ZoneInfo(nl.timezone),
            send_at=nl.send_at,
            templates=nl.templates,
            max_kb=nl.max_kb,
            picks=nl.picks,
            max_per_blog=nl.max_per_blog,
            subject=nl.subject,
            postal_address=nl.postal_address,
            signup=settings.signup_enabled,
        )

    @cached_property
    def schedule(self) -> SendSchedule:
        # APScheduler only when a send time is needed: `digest preview --as-of` goes without.
        from digest.issue.sendtimes import SendSchedule

        return SendSchedule.parse(self.send_at, self.timezone.key)

    @property
    def renderer(self) -> Renderer:
        from digest.issue.render import renderer_for

        return renderer_for(self.templates, self.timezone)

    @property
    def budget(self) -> int:
        """Bytes the HTML part may have: newsletter.max_kb, less room for the subscriber's
        own unsubscribe and preferences links (each up to 190 bytes, in the HTML once or
        twice), which replace the placeholders."""
        return self.max_kb * 1000 - 900

    def next_send(self, after: datetime) -> datetime:
        """The first send time strictly after ``after``. ConfigError if there is none."""
        found = self.schedule.next_after(after)
        if found is None:
            raise ConfigError(f"newsletter.send_at: {self.send_at!r} names no future time")
        return found


@dataclass(frozen=True)
class Ending:
    """Where an issue's window ends, and the send it stands for.

    ``digest send`` by hand ends its issue now (or at --as-of, never later than now); the
    daemon's send ends it at the send time that fell due. Both count the first issue's week
    back from ``scheduled`` (the send time the issue stands for), so they agree on where it
    starts; `digest preview` ends where `digest send` at the same moment would.
    """

    end: datetime
    scheduled: datetime
    how: str  # "now": a send by hand, or a preview; "as-of": --as-of, or the daemon's send

    def describe(self, zone: ZoneInfo) -> str:
        """Which end this is, in words ("now, as `digest send` would end it now")."""
        at = show(self.end, zone)
        if self.how == "now":
            return (
                f"ends now ({at}), as `digest send` run now would; the scheduled send at "
                f"{show(self.scheduled, zone)} takes posts up to then"
            )
        return f"ends at --as-of ({at})"


def ending(newsletter: Newsletter, as_of: datetime | None, now: datetime) -> Ending:
    """The end of the issue sent at ``now``: at ``as_of`` (the daemon's: the send time that
    fell due), else now; never after now."""
    if as_of is None:
        return Ending(now, newsletter.next_send(now), "now")
    return Ending(min(as_of, now), as_of, "as-of")


def previewed(newsletter: Newsletter, as_of: datetime | None, now: datetime) -> Ending:
    """The end `digest preview` uses: a send's at ``now``; an --as-of in the future is shown as
    that week would stand (a look ahead: a send now would end now)."""
    if as_of is not None and as_of > now:
        return Ending(as_of, as_of, "as-of")
    return ending(newsletter, as_of, now)


def parse_as_of(text: str, timezone: ZoneInfo) -> datetime:
    """ISO 8601; a date alone is the end of that day, a naive time is in ``timezone``; UTC."""
    value = text.strip()
    try:
        if _DATE_ONLY.fullmatch(value):
            day = date.fromisoformat(value)
            local = datetime.combine(day, time(23, 59, 59), tzinfo=timezone)
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            local = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone)
    except ValueError:
        raise InputError(
            f"--as-of: {text!r} is not an ISO 8601 date or time (e.g. 2026-01-10 or "
            "2026-01-10T08:00+01:00)"
        ) from None
    if not EARLIEST_YEAR <= local.year <= LATEST_YEAR:
        raise InputError(
            f"--as-of: {value} is out of range: give a date from {EARLIEST_YEAR} to {LATEST_YEAR}"
        )
    return local.astimezone(UTC)


def show(when: datetime, zone: ZoneInfo) -> str:
    """A moment for people: "Sat 10 Jan 2026 08:00 UTC", in the newsletter's zone."""
    local = when.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname()}"


def day_of(when: datetime, zone: ZoneInfo) -> str:
    """The local day, as --as-of takes it (2026-01-10)."""
    return when.astimezone(zone).date().isoformat()
