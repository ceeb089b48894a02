"""Pure decisions of the daemon: which send to run now (missed, interrupted, skipped), and how
often to look for due feeds.

No I/O and no clock here: every function takes ``now`` (UTC) and the stored state and returns
the decision, so each rule is tested by calling it. The daemon stores the state and acts.
When issues go out at all is issue.sendtimes' business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from digest.config import Settings

# Where the daemon keeps its SendState, and the settings it runs with (the meta table).
SEND_STATE_KEY = "daemon_send_state"
RUNNING_SETTINGS_KEY = "daemon_settings"
MAX_POLL_TICK = timedelta(seconds=30)
MIN_POLL_TICK = timedelta(seconds=1)
MAX_START_SPREAD = timedelta(minutes=10)


# --- the send decision ---------------------------------------------------------------------


@dataclass(frozen=True)
class SendState:
    """What the daemon stores about sends (in the meta table), so restarts know what was done."""

    last_due: datetime | None = None  # the latest scheduled send handled: sent, or skipped
    in_progress: datetime | None = None  # a send started and not finished (crash, stop, failure)

    def to_json(self) -> str:
        return json.dumps({"last_due": _iso(self.last_due), "in_progress": _iso(self.in_progress)})

    @classmethod
    def from_json(cls, text: str | None) -> SendState | None:
        """None for no or unreadable state (the daemon then starts afresh)."""
        if not text:
            return None
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(_time(data.get("last_due")), _time(data.get("in_progress")))
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class SendAction:
    """What to do about sends now: ``send`` the issue due at ``due``, or ``skip`` it (too old)."""

    kind: Literal["send", "skip"]
    due: datetime
    resume: bool = False  # finishing a send that was interrupted


def first_state(now: datetime, latest: datetime | None) -> SendState:
    """The state of a database the daemon never ran on: nothing before now was missed."""
    return SendState(last_due=latest or now)


def decide_send(
    now: datetime, state: SendState, latest: datetime | None, grace: timedelta
) -> SendAction | None:
    """The send to run (or skip) now, given the stored state and the latest send time <= now.

    An interrupted send is resumed first; then the latest scheduled send not yet handled runs,
    once, however many were missed; either one is skipped when older than ``grace``. A state
    that has handled nothing yet (``last_due`` None) has missed nothing.
    """
    if state.in_progress is not None:
        kind: Literal["send", "skip"] = "send" if now - state.in_progress <= grace else "skip"
        return SendAction(kind, state.in_progress, resume=True)
    if latest is None or latest > now or state.last_due is None or latest <= state.last_due:
        return None
    return SendAction("send" if now - latest <= grace else "skip", latest)


def started(state: SendState, due: datetime) -> SendState:
    return SendState(state.last_due, due)


def handled(state: SendState, due: datetime) -> SendState:
    """The state once the send due at ``due`` is done (or given up): never moves backwards."""
    last = due if state.last_due is None else max(state.last_due, due)
    return SendState(last, None)


@dataclass(frozen=True)
class RunningSettings:
    """The settings a running daemon schedules by, stored at its start for `digest status`
    (which may run in a shell with other settings, or none)."""

    poll_interval: timedelta
    send_at: str
    timezone: str

    @classmethod
    def of(cls, settings: Settings) -> RunningSettings:
        nl = settings.newsletter
        return cls(settings.feeds.poll_interval, nl.send_at, nl.timezone)

    def to_json(self) -> str:
        data = {"poll_interval_s": self.poll_interval.total_seconds()}
        return json.dumps({**data, "send_at": self.send_at, "timezone": self.timezone})

    @classmethod
    def from_json(cls, text: str | None) -> RunningSettings | None:
        if not text:
            return None
        try:
            data: dict[str, Any] = json.loads(text)
            interval = timedelta(seconds=float(data["poll_interval_s"]))
            return cls(interval, str(data["send_at"]), str(data["timezone"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def differences(self, other: RunningSettings) -> list[str]:
        """The settings that differ from ``other``'s, by name."""
        names = ("feeds.poll_interval", "newsletter.send_at", "newsletter.timezone")
        pairs = zip(names, (self.poll_interval, self.send_at, self.timezone), strict=True)
        theirs = (other.poll_interval, other.send_at, other.timezone)
        return [name for (name, mine), their in zip(pairs, theirs, strict=True) if mine != their]


# --- poll pacing ---------------------------------------------------------------------------


def poll_tick(poll_interval: timedelta) -> timedelta:
    """How often the daemon looks for due feeds: a tenth of the interval, from 1 s to 30 s."""
    return max(MIN_POLL_TICK, min(poll_interval / 10, MAX_POLL_TICK))


def start_spread(poll_interval: timedelta) -> timedelta:
    """Over how long the polls that fell due while the daemon was down are spread out."""
    return min(poll_interval, MAX_START_SPREAD)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
