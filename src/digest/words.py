"""How digest says things to people: a count with its noun ("1 feed", "2 feeds"), a time and a
span of times in the newsletter's zone, labelled. Logs and JSON keep UTC (ISO 8601)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

# Nouns whose plural is not the singular plus "s".
_IRREGULAR = {
    "address": "addresses",
    "entry": "entries",
    "delivery": "deliveries",
    "was": "were",
    "is": "are",
    "it": "them",  # as an object: "--force polls them"
}


def plural(noun: str, n: int) -> str:
    """``noun`` as it goes with ``n``: ``plural("feed", 1)`` is "feed", with 2 "feeds"."""
    if n == 1:
        return noun
    return _IRREGULAR.get(noun, noun + "s")


def counted(n: int, noun: str) -> str:
    """``n`` with its noun, thousands grouped: "1 feed", "0 feeds", "1,204 posts"."""
    return f"{n:,} {plural(noun, n)}"


def show_time(value: datetime | None, zone: str, *, none: str = "never") -> str:
    """A time as people read it: in the newsletter's zone, labelled (``2026-11-30 09:00 CET``).
    ``none`` stands for a missing time."""
    if value is None:
        return none
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def show_span(start: datetime, end: datetime, zone: str) -> str:
    """From one time to another, both in the zone: ``2026-11-21 08:00 to 2026-11-28 08:00 CET``
    (the label once when both share it)."""
    first, last = show_time(start, zone), show_time(end, zone)
    label = first.rsplit(" ", 1)[1]
    if last.endswith(" " + label):
        first = first.rsplit(" ", 1)[0]
    return f"{first} to {last}"


def utc_time(value: datetime | None, *, none: str = "never") -> str:
    """A time as logs give it: UTC, labelled (``2026-11-30 08:00 UTC``)."""
    return show_time(value, "UTC", none=none)
