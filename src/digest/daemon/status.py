"""What `digest status` reports: daemon, next poll and send, last issue, feeds, subscribers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from digest.bounces.events import issue_rates
from digest.bounces.quarantine import read_quarantine
from digest.config import Settings
from digest.daemon.schedule import (
    RUNNING_SETTINGS_KEY,
    SEND_STATE_KEY,
    RunningSettings,
    SendState,
    decide_send,
)
from digest.delivery import counts
from digest.delivery.subscribers import count_by_status
from digest.ingest import policy
from digest.issue.sendtimes import SendSchedule
from digest.locks import holder_alive, read_holder
from digest.models import Feed, Issue
from digest.settingvalues import format_duration
from digest.storage import Database
from digest.types import DeliveryStatus, FeedStatus
from digest.words import counted, show_time

# Issues whose bounce and complaint rates `digest status` shows, newest first.
RATES_SHOWN = 5


def collect_status(db: Database, settings: Settings, now: datetime) -> dict[str, Any]:
    """The state of things as plain data (times as ISO strings in UTC), for text or JSON.

    While a daemon runs, the next send is the one its settings schedule, not this shell's.
    """
    poll_at = next_poll(db, now)
    daemon = daemon_status(db, now, settings)
    running = daemon_settings(db) if daemon and daemon["alive"] else None
    schedule = RunningSettings.of(settings) if running is None else running
    return {
        "now": now.isoformat(),
        "daemon": daemon,
        "daemon_timezone": running.timezone if running else None,
        "next_poll": _iso(poll_at),
        "poll_due_now": poll_at is not None and poll_at <= now,
        **send_status(db, settings, now, schedule),
        "sending": settings.sending_enabled,
        "last_issue": last_issue(db),
        "feeds": feed_counts(db),
        "feeds_in_error": feeds_in_error(db, now),
        "subscribers": count_by_status(db),
        "issue_rates": [r.as_json() for r in issue_rates(db, last=RATES_SHOWN)],
        "bounces_heard_from": bounce_sources(settings),
        "bounces_set_aside": {
            **read_quarantine(db).as_json(),
            "folder": settings.bounces.quarantine_folder,
        },
    }


def daemon_status(
    db: Database, now: datetime, settings: Settings | None = None
) -> dict[str, Any] | None:
    """The daemon holding the lock (None: none), whether it looks alive, the settings it
    schedules by, and which of those differ from ``settings`` (this shell's)."""
    holder = read_holder(db)
    if holder is None:
        return None
    running = daemon_settings(db)
    differ = running.differences(RunningSettings.of(settings)) if running and settings else []
    return {
        "pid": holder.pid,
        "host": holder.host,
        "started": holder.started.isoformat(),
        "heartbeat": holder.heartbeat.isoformat(),
        "alive": holder_alive(holder, now),
        "poll_interval": format_duration(running.poll_interval) if running else None,
        "send_at": running.send_at if running else None,
        "timezone": running.timezone if running else None,
        "settings_differ": differ,
    }


def daemon_settings(db: Database) -> RunningSettings | None:
    """The settings the daemon stored at its start (possibly a dead one's)."""
    return RunningSettings.from_json(db.get_meta(RUNNING_SETTINGS_KEY))


def next_poll(db: Database, now: datetime) -> datetime | None:
    """When the next feed falls due (its schedule or its hold, the later); None: nothing to poll."""
    with db.session() as s:
        rows = s.execute(
            select(Feed.due_at, Feed.next_fetch_at).where(
                Feed.active.is_(True), Feed.status != FeedStatus.GONE
            )
        ).all()
    times = [max(t for t in (due, hold, now) if t is not None) for due, hold in rows]
    return min(times) if times else None


def send_status(
    db: Database, settings: Settings, now: datetime, running: RunningSettings | None = None
) -> dict[str, Any]:
    """The next send, and a send that is owed now (missed or interrupted, within grace), by
    the schedule of ``running`` (the daemon's) else of ``settings``."""
    running = running or RunningSettings.of(settings)
    schedule = SendSchedule.parse(running.send_at, running.timezone)
    upcoming = schedule.next_after(now)
    state = SendState.from_json(db.get_meta(SEND_STATE_KEY))
    owed = None
    if state is not None:
        action = decide_send(now, state, schedule.latest_until(now), settings.newsletter.send_grace)
        if action is not None and action.kind == "send":
            owed = action.due
    return {
        "next_send": _iso(upcoming),
        "send_owed": _iso(owed),
        "last_send_due": _iso(state.last_due) if state else None,
    }


def last_issue(db: Database) -> dict[str, Any] | None:
    """The newest issue and how its deliveries stand."""
    with db.session() as s:
        issue = s.scalars(select(Issue).order_by(Issue.number.desc()).limit(1)).first()
        if issue is None:
            return None
        tally = counts.tallies(s, [issue.id])[issue.id]
    return {
        "number": issue.number,
        "created_at": issue.created_at.isoformat(),
        "window_end": issue.window_end.isoformat(),
        "status": issue.status,
        "posts": issue.post_count,
        "subject": issue.subject,
        "delivered": tally.count(DeliveryStatus.SENT),  # handed to the relay (kept for scripts)
        "handed_to_relay": tally.count(DeliveryStatus.SENT),
        "failed": tally.count(DeliveryStatus.FAILED),
        "pending": tally.count(DeliveryStatus.PENDING) + tally.count(DeliveryStatus.SENDING),
    }


def feeds_in_error(db: Database, now: datetime) -> list[dict[str, Any]]:
    """Active feeds whose last fetch failed, longest failing first."""
    with db.session() as s:
        feeds = s.scalars(
            select(Feed)
            .where(Feed.active.is_(True), Feed.failing_since.is_not(None))
            .order_by(Feed.failing_since, Feed.id)
        ).all()
    return [
        {
            "url": f.url,
            "status": f.status,
            "error": f.last_error,
            "failing_since": _iso(f.failing_since),
            "failing_7_days": policy.is_long_failing(f, now),
        }
        for f in feeds
    ]


def never_polled(db: Database) -> int:
    """Active feeds never polled yet: the daemon's first round fetches them all at once."""
    with db.session() as s:
        query = select(func.count()).where(Feed.active.is_(True), Feed.polled_once.is_(False))
        return s.execute(query).scalar_one()


def feed_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(Feed.active, func.count()).group_by(Feed.active)).all()
    by_flag = {bool(active): n for active, n in rows}
    return {"active": by_flag.get(True, 0), "inactive": by_flag.get(False, 0)}


def format_status(status: dict[str, Any], zone: str) -> list[str]:
    """The report as lines for people, times in the newsletter's time zone (the daemon's)."""
    zone = status.get("daemon_timezone") or zone
    return [
        "daemon:      " + _daemon_line(status["daemon"], zone),
        *_differ_lines(status["daemon"]),
        "next poll:   " + _next_poll_line(status, zone),
        "next send:   " + _next_send_line(status, zone),
        "last issue:  " + _issue_line(status["last_issue"], zone),
        f"feeds:       {status['feeds']['active']} active, {status['feeds']['inactive']} inactive",
        "subscribers: " + ", ".join(f"{n} {name}" for name, n in status["subscribers"].items()),
        "rates:       " + _rates_heading(status),
        *(
            _rates_line(rates, bool(status["bounces_heard_from"]))
            for rates in status["issue_rates"]
        ),
        *_set_aside_lines(status["bounces_set_aside"]),
        f"feeds in error: {len(status['feeds_in_error'])}",
        *(_feed_line(feed, zone) for feed in status["feeds_in_error"]),
    ]


def bounce_sources(settings: Settings) -> list[str]:
    """Where bounces and complaints come back from (none: only refusals at sending are known)."""
    sources = [("bounce mailbox", bool(settings.bounces.imap_url))]
    sources += [("SES", settings.webhooks.ses), ("Postmark", settings.webhooks.postmark)]
    return [name for name, on in sources if on]


def _rates_heading(status: dict[str, Any]) -> str:
    if not status["issue_rates"]:
        return "none yet"
    if not status["bounces_heard_from"]:
        return (
            "only refusals at sending are known (no bounces.imap_url or webhook hears later "
            "bounces and complaints)"
        )
    return "bounces and complaints heard from the " + ", ".join(status["bounces_heard_from"])


def _rates_line(r: dict[str, Any], heard: bool) -> str:
    line = f"  #{r['number']}: {r['sent']} handed to the relay, {r['failed']} refused"
    if not heard:
        tried = r["sent"] + r["failed"]
        refused = r["failed"] / tried if tried else 0.0
        return f"{line} ({refused:.2%} of {tried} tried)"
    return (
        f"{line}; bounce rate {r['bounce_rate']:.2%} ({r['hard_bounces']} hard, "
        f"{r['soft_bounces']} soft), complaint rate {r['complaint_rate']:.2%} "
        f"({r['complaints']})"
    )


def _set_aside_lines(aside: dict[str, Any]) -> list[str]:
    if not aside["count"]:
        return []
    newest = aside["recent"][0]
    return [
        f"bounce mailbox: {aside['count']} unreadable messages set aside in {aside['folder']} "
        f"(newest from {newest['sender']}: {newest['reason']})"
    ]


def _daemon_line(daemon: dict[str, Any] | None, zone: str) -> str:
    if daemon is None:
        return "not running"
    state = "running" if daemon["alive"] else "not responding (its lock will be taken over)"
    since = _local(daemon["started"], zone)
    return f"{state}, pid {daemon['pid']} on {daemon['host']} since {since}"


def _differ_lines(daemon: dict[str, Any] | None) -> list[str]:
    if not daemon or not daemon["alive"] or not daemon["settings_differ"]:
        return []
    return [
        "             note: the running daemon's settings differ from this shell's ("
        + ", ".join(daemon["settings_differ"])
        + f"); the times shown are the daemon's: polling every {daemon['poll_interval']}, "
        f"sending at {daemon['send_at']} ({daemon['timezone']})"
    ]


def _next_poll_line(status: dict[str, Any], zone: str) -> str:
    if status["next_poll"] is None:
        return "no feeds to poll"
    if status["daemon"] is None and status["poll_due_now"]:
        return "due now (when the daemon runs)"
    return _local(status["next_poll"], zone)


def _next_send_line(status: dict[str, Any], zone: str) -> str:
    line = _local(status["next_send"], zone) or "never (newsletter.send_at names no time)"
    if status["send_owed"]:
        line = f"now: the send due {_local(status['send_owed'], zone)} is owed; then {line}"
    if not status["sending"]:
        line += " (sending is off: issues are recorded only)"
    return line


def _issue_line(issue: dict[str, Any] | None, zone: str) -> str:
    if issue is None:
        return "none yet"
    return (
        f"#{issue['number']} of {_local(issue['created_at'], zone)}, "
        f"{counted(issue['posts'], 'post')}: "
        f"{issue['handed_to_relay']} handed to the relay, {issue['failed']} refused, "
        f"{issue['pending']} pending"
    )


def _feed_line(feed: dict[str, Any], zone: str) -> str:
    error = (feed["error"] or feed["status"]).splitlines()[0][:120]
    flag = " [7+ days]" if feed["failing_7_days"] else ""
    return f"  {feed['url']}  since {_local(feed['failing_since'], zone)}{flag}: {error}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _local(value: str | None, zone: str) -> str:
    return show_time(datetime.fromisoformat(value), zone) if value else ""
