"""Issue 24's words: counts with their nouns ("1 feed", never "1 feeds"), spans "from X to Y",
times for people in the newsletter's zone (labelled), UTC for logs and JSON."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.cli.context import setup_logging
from digest.delivery.subscribers import list_subscribers, unsubscribe
from digest.delivery.summary import SendSummary
from digest.ingest.policy import Held, Hold
from digest.ingest.skipped import held_back
from digest.ingest.summary import PollSummary
from digest.storage import Database
from digest.words import counted, plural, show_span, show_time
from tests.conftest import run_cli
from tests.issue_helpers import SAT, add_feed, add_post

BERLIN = {"DIGEST_NEWSLETTER_TIMEZONE": "Europe/Berlin"}


def test_counts_take_their_nouns() -> None:
    assert [counted(n, "feed") for n in (0, 1, 2, 1204)] == [
        "0 feeds",
        "1 feed",
        "2 feeds",
        "1,204 feeds",
    ]
    assert (plural("delivery", 2), plural("address", 3), plural("post", 1)) == (
        "deliveries",
        "addresses",
        "post",
    )
    one = PollSummary(feeds=1, new_posts=1, errors=1, elapsed_s=0.2, pages=1).line()
    assert one == (
        "polled 1 feed: 1 new post, 0 updated, 0 not modified, 1 error in 0.2 s; 1 teaser "
        "post's page read for its length"
    )
    assert PollSummary(feeds=2, new_posts=0).line().startswith("polled 2 feeds: 0 new posts,")
    held = Held({Hold.GONE: 2, Hold.BACKING_OFF: 2}, until=datetime(2026, 12, 6, 7, tzinfo=UTC))
    assert held_back(held, "UTC") == (
        "; 2 feeds skipped, backing off (the first until 2026-12-06 07:00 UTC): --force polls "
        "them; 2 gone feeds skipped (HTTP 410): `digest feeds retry URL` polls them again"
    )  # "polls they" before


def test_times_for_people_are_in_the_zone_and_labelled() -> None:
    winter = datetime(2026, 1, 10, 7, 0, tzinfo=UTC)
    assert show_time(winter, "Europe/Berlin") == "2026-01-10 08:00 CET"
    assert show_time(None, "UTC") == "never"
    assert show_span(winter - timedelta(days=7), winter, "Europe/Berlin") == (
        "2026-01-03 08:00 to 2026-01-10 08:00 CET"
    )
    summer = datetime(2026, 4, 1, 6, 0, tzinfo=UTC)  # a span across the change keeps both
    assert show_span(winter, summer, "Europe/Berlin") == (
        "2026-01-10 08:00 CET to 2026-04-01 08:00 CEST"
    )
    empty = SendSummary(mode="empty", window_start=winter - timedelta(days=7), window_end=winter)
    assert empty.line("Europe/Berlin") == (
        "nothing to send: no new posts from 2026-01-03 08:00 to 2026-01-10 08:00 CET"
    )


def test_the_preview_and_subscribers_speak_the_newsletters_zone(
    workdir: Path, sqlite_url: str
) -> None:
    db = Database(sqlite_url)
    add_post(db, add_feed(db, "Deep Blog"), "One post", date=SAT - timedelta(days=2))
    db.dispose()
    env = {"DIGEST_DATABASE_URL": sqlite_url, **BERLIN}
    week = run_cli(["preview", "--as-of", SAT.isoformat(), "-o", "-"], env)
    assert week.exit_code == 0
    one = run_cli(["preview", "--as-of", SAT.isoformat()], env)
    assert "issue #1: 1 post from 1 blog, " in one.stderr  # was "1 posts from 1 blogs"
    empty = run_cli(["preview", "--as-of", (SAT + timedelta(days=70)).isoformat()], env)
    said, hint = empty.stdout.splitlines()  # was "between 2026-03-14 08:00 – 2026-03-21 08:00 UTC"
    assert said == (
        "no new posts from 2026-03-14 09:00 to 2026-03-21 09:00 CET: issue #1 would not be sent"
    )
    assert hint.startswith("the newest stored post is from 2026-01-08 09:00 CET: ")
    assert run_cli(["subscribers", "add", "ann@example.com"], env).exit_code == 0
    db = Database(sqlite_url)
    [ann] = list_subscribers(db)
    unsubscribe(db, ann.id, now=datetime(2026, 7, 1, 10, 0, tzinfo=UTC))
    db.dispose()
    listed = run_cli(["subscribers", "list"], env).stdout
    assert "unsubscribed 2026-07-01 12:00 CEST" in listed
    as_json = json.loads(run_cli(["subscribers", "list", "--json"], env).stdout)
    assert as_json[0]["unsubscribed_at"].startswith("2026-07-01T10:00:00")  # JSON: UTC


def test_log_lines_are_stamped_in_utc() -> None:
    record = logging.LogRecord("x", logging.WARNING, "", 0, "hello", None, None)
    record.created = datetime(2026, 1, 10, 7, 0, 1, tzinfo=UTC).timestamp()
    record.msecs = 0
    setup_logging("warning", "text")
    line = logging.getLogger().handlers[0].format(record)
    assert line == "2026-01-10T07:00:01.000Z WARNING x: hello"
