"""`digest run` end to end: a real process, real HTTP feeds, SIGTERM, the lock, restarts."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_digest, wait_for
from tests.daemon_helpers import FEEDS, Farm, Running, base_env

pytestmark = pytest.mark.slow


def test_polls_every_interval_one_daemon_per_database_sigterm(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, sqlite_url, farm)  # polling only: the next send time is a year away
    first = Running(env, workdir, workdir / "run1.log")
    runs.append(first)
    wait_for(lambda: all(len(farm.hits(n)) >= 4 for _f, n in FEEDS), 40, what="four polls a feed")
    for _folder, name in FEEDS:
        hits = farm.hits(name)
        gaps = [b - a for a, b in zip(hits, hits[1:], strict=False)]
        # Every 3 s, give or take the 10% jitter and the 1 s tick; never two at once.
        assert all(2.4 < gap < 5.5 for gap in gaps), (name, gaps)
    assert farm.http.max_in_flight <= len(FEEDS)

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
