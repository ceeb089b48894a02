"""What the daemon says as it starts: how it schedules, the feeds it moved, and what an
operator still has to set before mail can go out."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from digest.config import Settings
from digest.daemon.schedule import SendState, start_spread
from digest.delivery import preflight
from digest.issue.sendtimes import SendSchedule
from digest.settingvalues import format_duration
from digest.words import counted, utc_time

log = logging.getLogger(__name__)


def report(
    settings: Settings,
    schedule: SendSchedule,
    now: datetime,
    tick: timedelta,
    state: SendState,
    web: threading.Thread | None,
) -> None:
    """The start line (text and JSON fields), and once what is missing to send mail."""
    next_send = schedule.next_after(now)
    log.info(
        "digest daemon started: polling every %s (due feeds checked every %s), "
        "sending at %s, next send %s",
        format_duration(settings.feeds.poll_interval),
        format_duration(tick),
        schedule.describe(),
        utc_time(next_send),
        extra={
            "fields": {
                "event": "start",
                "poll_interval_s": settings.feeds.poll_interval.total_seconds(),
                "send_at": settings.newsletter.send_at,
                "next_send": next_send.isoformat() if next_send else None,
                "last_send_due": state.last_due.isoformat() if state.last_due else None,
                "sending": settings.sending_enabled,
                "web": web is not None,
            }
        },
    )
    preflight.warn(settings)
    if not settings.sending_enabled:
        hints = mail_setup_hints(settings)
        log.warning(
            "sending is off (smtp.host is empty): each issue is recorded (see the archive "
            "and `digest preview`) and mailed to no one. To send mail, set %s",
            "; ".join(hints),
            extra={"fields": {"event": "setup", "to_set": hints}},
        )
    elif not settings.newsletter.postal_address:
        log.info(
            "%s",
            POSTAL_HINT,
            extra={"fields": {"event": "setup", "to_set": ["newsletter.postal_address"]}},
        )


def report_moved(interval: timedelta, overdue: int, brought: int) -> None:
    """The feeds whose next poll moved at start: overdue ones, and ones due too late."""
    if overdue:
        log.info(
            "%s fell due while the daemon was down: polling them over the next %s",
            counted(overdue, "feed"),
            format_duration(start_spread(interval)),
        )
    if brought:
        log.info(
            "%s due later than feeds.poll_interval (%s) allows: polling them over the next %s",
            counted(brought, "feed"),
            format_duration(interval),
            format_duration(interval),
        )


def report_first_polls(new: int, interval: timedelta) -> None:
    """The feeds about to be fetched for the first time (every listed blog, at a first start):
    said before it happens, since it is many requests at once."""
    if new:
        log.info(
            "polling %s for the first time now (what they hold already is stored as backlog, "
            "not sent); then each feed every %s",
            counted(new, "new feed"),
            format_duration(interval),
            extra={"fields": {"event": "first_polls", "feeds": new}},
        )


def mail_setup_hints(settings: Settings) -> list[str]:
    """The settings a new operator still has to set before mail can go out, each with why."""
    hints = ["smtp.host (and smtp.port, smtp.security, smtp.username and a password)"]
    nl = settings.newsletter
    if "@localhost" in nl.from_addr or nl.from_addr.endswith("localhost>"):
        hints.append(f"newsletter.from (now {nl.from_addr!r}): an address of your own domain")
    if not nl.base_url.startswith("https://") or "127.0.0.1" in nl.base_url:
        hints.append(
            f"newsletter.base_url (now {nl.base_url}): the public https address of the web "
            "endpoint, where the unsubscribe links in every mail point"
        )
    if not nl.postal_address:
        hints.append(POSTAL_HINT.removeprefix("set "))
    return hints


POSTAL_HINT = (
    "set newsletter.postal_address if you need one: a postal address shown in every issue's "
    "footer (CAN-SPAM asks it of commercial senders in the US)"
)
