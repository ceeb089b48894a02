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
    """`digest run` (or ``args``) as a real process, its log (JSON lines) read as it comes:
    kept in ``records()`` and copied to the file ``log``."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        log: Path,
        args: tuple[str, ...] = ("run",),
        log_level: str = "info",
    ) -> None:
        from tests.conftest import digest_env

        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digest", "--log-format", "json", "--log-level", log_level,
             *args],
            env=digest_env(env),
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self._lines: list[str] = []
        self._records: list[dict[str, Any]] = []
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.log.open("ab") as copy:
            for raw in self.proc.stderr:
                copy.write(raw)
                copy.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    record = json.loads(line)
                except ValueError:
                    record = {"message": line, "level": "raw"}
                with self._changed:
                    self._lines.append(line)
                    self._records.append(record)
                    self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def records(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._records)

    def text(self) -> str:
        """The log so far (all of it once the process has exited: see wait)."""
        with self._changed:
            return "\n".join(self._lines)

    def wait_log(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first log record that passes ``check``, waiting for it as lines come in."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [r for r in self._records if check(r)][:1]
            return bool(found) or self._closed

        with self._changed:
            self._changed.wait_for(seen, timeout)
        if not found:
            state = "exited" if self._closed else f"no such log line in {timeout} s"
            raise AssertionError(f"digest {state}:\n{self.text()}")
        return found[0]

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        """The exit code, once the process has exited and its log is read to the end."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit code and how long it took."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.wait(timeout)
        finally:
            self.kill()
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)


@pytest.fixture
def farm(http: FeedServer) -> Farm:
    return Farm(http)


@pytest.fixture
def runs() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        run.kill()


def last_send_time() -> datetime:
    """A send time that fell a minute or two ago: the daemon's schedule in tests (see
    base_env) sends there, and again only a year later, never while a test runs."""
    return (datetime.now(UTC) - timedelta(minutes=1)).replace(second=0, microsecond=0)


def yearly(at: datetime) -> str:
    """newsletter.send_at firing once a year, at ``at`` (UTC)."""
    return f"cron: {at.minute} {at.hour} {at.day} {at.month} *"


def base_env(
    workdir: Path, db_url: str, farm: Farm, last_send: datetime | None = None
) -> dict[str, str]:
    """A daemon polling ``farm`` every 3 s, its last send time ``last_send`` (default: a
    minute ago): it sends only when a test asks (SIGUSR1) or owes it that send."""
    farm.write_opml(workdir / "feeds.opml")
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_FEEDS_POLL_INTERVAL": "3s",
        "DIGEST_FEEDS_TIMEOUT": "5s",
        "DIGEST_NEWSLETTER_SEND_AT": yearly(last_send or last_send_time()),
        "DIGEST_NEWSLETTER_TIMEZONE": "UTC",
        "DIGEST_WEB_ENABLED": "false",
    }
