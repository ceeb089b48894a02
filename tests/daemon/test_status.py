"""`digest status`: the daemon, next poll and send, the last issue, failing feeds, subscribers."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.configfile import load_settings
from digest.daemon.schedule import SEND_STATE_KEY, SendState
from digest.daemon.status import collect_status, format_status
from digest.delivery import counts
from digest.locks import DaemonLock
from digest.models import Delivery, Feed, Issue, Subscriber
from digest.storage import Database, utcnow
from tests.conftest import run_cli

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def fill(db: Database, now: datetime) -> None:
    with db.session() as s:
        feed = {"section": "other", "added_at": now - timedelta(days=30), "error_count": 0}
        s.add(
            Feed(
                source_url="a",
                url="https://a.example/feed",
                active=True,
                status="ok",
                due_at=now + timedelta(minutes=20),
                polled_once=True,
                **feed,
            )
        )
        s.add(
            Feed(
                source_url="b",
                url="https://b.example/feed",
                active=True,
                status="error",
                due_at=now + timedelta(minutes=5),
                last_error="HTTP 500 Internal Server Error",
                failing_since=now - timedelta(days=8),
                polled_once=True,
                **feed,
            )
        )
        s.add(
            Feed(
                source_url="c",
                url="https://c.example/feed",
                active=True,
                status="gone",
                failing_since=now - timedelta(days=1),
                polled_once=True,
                **feed,
            )
        )
        s.add(
            Feed(
                source_url="d",
                url="https://d.example/feed",
                active=False,
                status="ok",
                polled_once=True,
                **feed,
            )
        )
        subs = [
            Subscriber(email=f"s{k}@example.com", status=status, created_at=now)
            for k, status in enumerate(
                ["active", "active", "active", "unsubscribed", "bounced", "pending", "pending"]
            )
        ]
        s.add_all(subs)
        for number in (1, 2):
            s.add(
                Issue(
                    number=number,
                    window_start=now - timedelta(days=7 * (3 - number)),
                    window_end=now - timedelta(days=7 * (2 - number)),
                    created_at=now - timedelta(days=7 * (2 - number)),
                    subject=f"#{number}",
                    html="",
                    text="",
                    post_count=10 + number,
                    status="sent",
                )
            )
        s.flush()
        issue = s.query(Issue).filter_by(number=2).one()
        for sub, status in zip(subs[:3], ["sent", "sent", "failed"], strict=True):
            s.add(Delivery(issue_id=issue.id, subscriber_id=sub.id, status=status,
                           attempts=1, updated_at=now))  # fmt: skip
        counts.add(s, issue.id, {"sent": 2, "failed": 1})  # as the delivery log counts them


def test_collect_status(db: Database) -> None:
    fill(db, NOW)
    settings = load_settings(env={})
    db.set_meta(SEND_STATE_KEY, SendState(last_due=datetime(2026, 11, 21, 8, tzinfo=UTC)).to_json())
    status = collect_status(db, settings, NOW)
    assert status["daemon"] is None
    assert status["next_poll"] == (NOW + timedelta(minutes=5)).isoformat()  # not the gone feed
    assert status["next_send"] == "2026-11-28T08:00:00+00:00"
    assert status["send_owed"] is None
    assert status["sending"] is False
    issue = status["last_issue"]
    assert issue["number"] == 2 and issue["posts"] == 12
    assert (issue["delivered"], issue["failed"], issue["pending"]) == (2, 1, 0)
    assert status["feeds"] == {"active": 3, "inactive": 1}
    errors = status["feeds_in_error"]
    assert [(f["url"], f["failing_7_days"]) for f in errors] == [
        ("https://b.example/feed", True),
        ("https://c.example/feed", False),
    ]
    assert status["subscribers"] == {
        "pending": 2,
        "active": 3,
        "unsubscribed": 1,
        "bounced": 1,
        "complained": 0,
    }
    json.dumps(status)  # plain data

    lines = format_status(status, "Europe/Berlin")
    text = "\n".join(lines)
    assert "daemon:      not running" in text
    assert "next poll:   2026-11-23 13:05 CET" in text
    assert "next send:   2026-11-28 09:00 CET (sending is off" in text
    assert (
        "last issue:  #2 of 2026-11-23 13:00 CET, 12 posts: 2 handed to the relay, 1 refused"
    ) in text
    assert "subscribers: 2 pending, 3 active, 1 unsubscribed, 1 bounced" in text
    assert "https://b.example/feed  since 2026-11-15 13:00 CET [7+ days]: HTTP 500" in text


def test_status_shows_an_owed_send_and_the_daemon(db: Database) -> None:
    settings = load_settings(env={})
    # The daemon last handled the send of two weeks ago: last Saturday's is owed (within grace).
    db.set_meta(SEND_STATE_KEY, SendState(last_due=datetime(2026, 11, 14, 8, tzinfo=UTC)).to_json())
    now = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)
    lock = DaemonLock(db)
    lock.acquire()
    try:
        status = collect_status(db, settings, utcnow())
        assert status["daemon"]["pid"] == os.getpid()
        assert status["daemon"]["host"] == socket.gethostname()
        assert status["daemon"]["alive"] is True
        status = collect_status(db, settings, now)
        assert status["send_owed"] == "2026-11-21T08:00:00+00:00"
        assert status["next_poll"] is None and status["last_issue"] is None
        text = "\n".join(format_status(status, "UTC"))
        assert "next send:   now: the send due 2026-11-21 08:00 UTC is owed" in text
        assert "no feeds to poll" in text and "none yet" in text
    finally:
        lock.release()


def test_status_command(workdir: Path, db_url: str) -> None:
    db = Database(db_url)
    fill(db, utcnow())
    db.dispose()
    env = {"DIGEST_DATABASE_URL": db_url}
    result = run_cli(["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["subscribers"]["active"] == 3
    assert data["last_issue"]["number"] == 2
    text = run_cli(["status"], env=env)
    assert text.exit_code == 0
    assert "feeds in error: 2" in text.output


def test_status_reads_the_running_daemons_schedule_not_the_shells(db: Database) -> None:
    from digest.daemon.schedule import RUNNING_SETTINGS_KEY, RunningSettings

    shell = load_settings(env={})  # saturday 08:00, hourly polls
    daemons = load_settings(
        env={"DIGEST_NEWSLETTER_SEND_AT": "cron: * * * * *", "DIGEST_FEEDS_POLL_INTERVAL": "30s"}
    )
    db.set_meta(RUNNING_SETTINGS_KEY, RunningSettings.of(daemons).to_json())
    now = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)  # a Monday
    lock = DaemonLock(db)
    lock.acquire()
    try:
        status = collect_status(db, shell, now)
        assert status["next_send"] == "2026-11-23T12:01:00+00:00"  # the daemon's cron
        assert status["daemon"]["settings_differ"] == ["feeds.poll_interval", "newsletter.send_at"]
        text = "\n".join(format_status(status, "UTC"))
        assert "note: the running daemon's settings differ from this shell's" in text
        assert "polling every 30s, sending at cron: * * * * * (UTC)" in text
        same = collect_status(db, daemons, now)
        assert same["daemon"]["settings_differ"] == []
    finally:
        lock.release()
    stopped = collect_status(db, shell, now)  # no daemon: this shell's settings
    assert stopped["next_send"] == "2026-11-28T08:00:00+00:00"
