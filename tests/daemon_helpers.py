"""Daemon test helpers: a feed server with a few growing feeds, `digest run` processes,
and their fixtures (registered for every test module by conftest's pytest_plugins)."""

from __future__ import annotations

import json
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

from tests.poll_helpers import Item, rss, write_opml
from tests.servers import FeedServer, Request, Response

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
        from tests.conftest import digest_env

        full_env = digest_env(env)
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
