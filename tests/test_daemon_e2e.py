"""`digest run` end to end: a real process, real HTTP feeds, SIGTERM, the lock, restarts."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.models import Feed, Fetch
from digest.storage import Database
from tests.conftest import run_cli, run_digest, wait_for
from tests.daemon_helpers import FEEDS, Farm, Running, base_env

pytestmark = pytest.mark.slow


def test_polls_every_interval_one_daemon_per_database_sigterm(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, sqlite_url, farm)  # polling only: the next send time is a year away
    first = Running(env, workdir, workdir / "run1.log")
    runs.append(first)

    def four_polls_a_feed() -> bool:
        stored = fetch_times(sqlite_url)
        return len(stored) == len(FEEDS) and all(len(t) >= 4 for t in stored.values())

    wait_for(four_polls_a_feed, 40, what="four polls a feed stored", every=0.2)
    # Every 3 s, give or take the 10% jitter: each round's time (the `now` its requests are
    # stored with) comes at least 2.7 s after the feed's last. Not the farm's arrival times: a
    # round late to its first request on a busy machine makes the next gap look short.
    for feed, times in fetch_times(sqlite_url).items():
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert all(gap >= 2.7 for gap in gaps), (feed, gaps)
    assert farm.http.max_in_flight <= len(FEEDS)  # never two requests at once for a feed

    # A second daemon on the same database says who holds it, in one line, and exits 1.
    second = run_digest(["run"], env, workdir, timeout=30)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "another digest daemon holds database" in lines[0]
    assert f"pid {first.proc.pid} on" in lines[0]

    status = run_cli(["status", "--json"], env)
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["daemon"]["pid"] == first.proc.pid and report["daemon"]["alive"]
    assert report["feeds"] == {"active": 3, "inactive": 0}

    code, took = first.terminate()
    assert code == 0 and took < 10, first.text()

    records = first.records()
    polls = [r for r in records if r.get("event") == "poll"]
    assert polls and all(r["errors"] == 0 for r in polls)
    assert polls[0]["new_posts"] == 9
    assert any(r.get("event") == "start" for r in records)
    assert any("sending is off" in r["message"] for r in records)
    assert records[-1]["message"] == "stopped"
    assert not [r for r in records if r["level"] in ("error", "critical", "raw")]

    # Stopped: the lock is free again, and status says so.
    status = run_cli(["status", "--json"], env)
    assert json.loads(status.stdout)["daemon"] is None


def fetch_times(url: str) -> dict[str, list[datetime]]:
    """Each feed's requests, by the time of the round that made them, in order."""
    db = Database(url)
    try:
        with db.session() as s:
            rows = s.execute(
                select(Feed.source_url, Fetch.at).join(Fetch).order_by(Fetch.at, Fetch.id)
            ).all()
    finally:
        db.dispose()
    times: dict[str, list[datetime]] = {}
    for feed, at in rows:
        times.setdefault(feed, []).append(at)
    return times


def test_sigint_and_a_missing_feed_list(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, sqlite_url, farm)
    run = Running(env, workdir, workdir / "run.log")
    runs.append(run)
    run.wait_log(lambda r: r.get("event") == "poll", 30)
    began = time.monotonic()
    run.signal(signal.SIGINT)
    assert run.wait(10) == 0
    assert time.monotonic() - began < 10

    missing = dict(env, DIGEST_FEEDS_OPML=str(workdir / "nope.opml"))
    result = run_digest(["run"], missing, workdir, timeout=30)
    assert result.returncode == 1
    assert "nope.opml does not exist" in result.stderr
