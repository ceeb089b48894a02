"""`digest run` end to end: a real process, real HTTP feeds, SIGTERM, the lock, restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_digest
from tests.poll_helpers import Item, rss, write_opml
from tests.servers import FeedServer, Request, Response

pytestmark = pytest.mark.slow

FEEDS = [("ML", "ml"), ("Systems", "sys"), ("ML", "deep")]


class Farm:
    """A few feeds with posts of the last days, recording when each one was fetched."""

    def __init__(self, http: FeedServer, posts: int = 3) -> None:
        self.http = http
        self.times: dict[str, list[float]] = {}
        self.items: dict[str, list[Item]] = {}
        self.lock = threading.Lock()
        for _folder, name in FEEDS:
            self.items[name] = []
            for k in range(posts):
                self.add_post(name, age=timedelta(hours=6 + 12 * k))
            http.route(f"/{name}.xml", self._handler(name))

    def add_post(self, name: str, age: timedelta = timedelta(minutes=1)) -> str:
        """A new post on top of the feed: its link."""
        site = f"https://{name}.example"
        with self.lock:
            k = len(self.items[name])
            link = f"{site}/posts/{k}.html"
            item = Item(
                guid=f"{site}/posts/{k}",
                title=f"{name} post {k}",
                link=link,
                text=f"Words about {name}, part {k}. " * 20,
                date=datetime.now(UTC) - age,
            )
            self.items[name].insert(0, item)
        return link

    def _handler(self, name: str) -> Callable[[Request], Response]:
        def handle(_req: Request) -> Response:
            with self.lock:
                self.times.setdefault(name, []).append(time.monotonic())
                body = rss(self.items[name], f"{name} blog", f"https://{name}.example")
            return Response(200, body, {"Content-Type": "application/rss+xml"})

        return handle

    def hits(self, name: str) -> list[float]:
        with self.lock:
            return list(self.times.get(name, []))

    def write_opml(self, path: Path) -> Path:
        return write_opml(path, [(f, f"{n} blog", self.http.url(f"/{n}.xml")) for f, n in FEEDS])


class Running:
    """`digest run` as a real process, its log (JSON lines) in a file."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        full_env.update(env)
        self.log = log
        self.stderr = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "--log-format", "json", "--log-level", "info", "run"],
            env=full_env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line, "level": "raw"})
        return out

    def wait_log(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if check(record):
                    return record
            assert self.proc.poll() is None, f"digest run exited: {self.log.read_text()}"
            time.sleep(0.2)
        raise AssertionError(f"no such log line in {timeout} s:\n{self.log.read_text()}")

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long it took."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@pytest.fixture
def farm(http: FeedServer) -> Farm:
    return Farm(http)


@pytest.fixture
def runs() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        run.kill()


def base_env(workdir: Path, db_url: str, farm: Farm) -> dict[str, str]:
    farm.write_opml(workdir / "feeds.opml")
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_FEEDS_POLL_INTERVAL": "3s",
        "DIGEST_FEEDS_TIMEOUT": "5s",
        "DIGEST_NEWSLETTER_SEND_AT": "cron: * * * * *",
        "DIGEST_WEB_ENABLED": "false",
    }


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_polls_every_interval_one_daemon_per_database_sigterm(
    workdir: Path, db_url: str, farm: Farm, runs: list[Running]
) -> None:
    # Polling only: the send time is far away.
    env = base_env(workdir, db_url, farm) | {"DIGEST_NEWSLETTER_SEND_AT": "cron: 0 0 1 1 *"}
    first = Running(env, workdir, workdir / "run1.log")
    runs.append(first)
    wait_until(lambda: all(len(farm.hits(n)) >= 4 for _f, n in FEEDS), 40, "four polls per feed")
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

    status = run_digest(["status", "--json"], env, workdir, timeout=30)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["daemon"]["pid"] == first.proc.pid and report["daemon"]["alive"]
    assert report["feeds"] == {"active": 3, "inactive": 0}

    code, took = first.terminate()
    assert code == 0 and took < 10, first.log.read_text()

    records = first.records()
    polls = [r for r in records if r.get("event") == "poll"]
    assert polls and all(r["errors"] == 0 for r in polls)
    assert polls[0]["new_posts"] == 9
    assert any(r.get("event") == "start" for r in records)
    assert any("sending is off" in r["message"] for r in records)
    assert records[-1]["message"] == "stopped"
    assert not [r for r in records if r["level"] in ("error", "critical", "raw")]

    # Stopped: the lock is free again, and status says so.
    status = run_digest(["status", "--json"], env, workdir, timeout=30)
    assert json.loads(status.stdout)["daemon"] is None


def test_sigint_and_a_missing_feed_list(
    workdir: Path, db_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, db_url, farm)
    run = Running(env, workdir, workdir / "run.log")
    runs.append(run)
    run.wait_log(lambda r: r.get("event") == "poll", 30)
    began = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(10) == 0
    assert time.monotonic() - began < 10

    missing = dict(env, DIGEST_FEEDS_OPML=str(workdir / "nope.opml"))
    result = run_digest(["run"], missing, workdir, timeout=30)
    assert result.returncode == 1
    assert "nope.opml does not exist" in result.stderr
