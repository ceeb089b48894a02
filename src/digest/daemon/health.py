"""What `GET /healthz` answers: is the database reachable, does the daemon that holds it (if
any) beat its heart, when did the last poll run and when is the next send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from digest.config import Settings
from digest.daemon.status import daemon_settings, daemon_status, send_status
from digest.errors import StorageError
from digest.ingest.tally import last_poll
from digest.storage import Database


def health_report(db: Database, settings: Settings, now: datetime) -> tuple[dict[str, Any], bool]:
    """The report, and whether all is well: the database answers, and a daemon that holds it
    beats its heart (locks.holder_alive). No daemon at all is healthy: `digest serve` alone,
    or between two runs of `digest poll` from cron."""
    try:
        daemon = daemon_status(db, now, settings)
        poll = last_poll(db)
        running = daemon_settings(db) if daemon and daemon["alive"] else None
        upcoming = send_status(db, settings, now, running)["next_send"]
    except StorageError as e:
        return {"status": "unhealthy", "database": f"unreachable: {e}"}, False
    healthy = daemon is None or bool(daemon["alive"])
    report = {
        "status": "ok" if healthy else "unhealthy",
        "database": "ok",
        "daemon": _heartbeat(daemon, now),
        "last_poll": poll,
        "next_send": upcoming,
    }
    return report, healthy


def _heartbeat(daemon: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if daemon is None:
        return None
    beat = datetime.fromisoformat(daemon["heartbeat"])
    return {
        "pid": daemon["pid"],
        "host": daemon["host"],
        "alive": daemon["alive"],
        "heartbeat_age_s": round((now - beat).total_seconds(), 1),
    }
