"""The archive and its Atom feed at N sent issues: GET /feed.xml and GET / from a real
`digest serve`, a full answer and a conditional one (304), with the statements each costs.

One busy week is planned and recorded with digest's own code (its web version ~85 KB, as a
real issue's), then copied into N sent issues with one executemany: years of history in
seconds. Prints the median of --runs requests of each kind over one keep-alive connection;
with --before, another checkout's code (its src/) serves the same database beside this one,
asked in turn, so both see the same load.

    .venv/bin/python bench/archive.py --issues 260
    git archive 394b7d4 src templates | tar -x -C /tmp/before
    .venv/bin/python bench/archive.py --issues 260 --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from busy_week import END, fill_week
from sqlalchemy import delete, event, insert, select
from starlette.testclient import TestClient

from digest.config import Settings
from digest.issue.plan import plan_issue, record_issue
from digest.models import Issue, Post
from digest.storage import Database
from digest.web import make_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(url: str, issues: int) -> None:
    """``issues`` sent issues, one a week, each a copy of one recorded busy week."""
    db = Database(url)
    fill_week(db, 60, 5)
    settings = Settings()
    assert record_issue(db, settings, plan_issue(db, settings, END)) is not None
    with db.session() as s:
        model = s.scalar(select(Issue))
        assert model is not None
        row = {c.name: getattr(model, c.name) for c in Issue.__table__.columns if c.name != "id"}
        s.execute(delete(Post))
        s.execute(delete(Issue))
        rows = []
        for n in range(1, issues + 1):
            week = timedelta(days=7 * (n - issues))
            rows.append({**row, "number": n, "status": "sent", "subject": f"Issue #{n}",
                         "window_start": model.window_start + week,
                         "window_end": model.window_end + week,
                         "created_at": model.created_at + week})  # fmt: skip
        s.execute(insert(Issue), rows)
    db.dispose()


def next_issue(url: str, number: int) -> None:
    """One more sent issue, a copy of the newest, a week later."""
    db = Database(url)
    with db.session() as s:
        model = s.scalar(select(Issue).order_by(Issue.number.desc()).limit(1))
        assert model is not None
        row = {c.name: getattr(model, c.name) for c in Issue.__table__.columns if c.name != "id"}
        week = timedelta(days=7)
        s.execute(insert(Issue), [{**row, "number": number, "subject": f"Issue #{number}",
                                   "window_start": model.window_start + week,
                                   "window_end": model.window_end + week,
                                   "created_at": model.created_at + week}])  # fmt: skip
    db.dispose()


def timed(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str]
) -> tuple[float, Any]:
    began = time.perf_counter()
    conn.request("GET", path, headers=headers)
    answer = conn.getresponse()
    answer.read()
    return (time.perf_counter() - began) * 1000, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=260)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--before", type=Path, help="another checkout's src/, served beside")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-archive-"))
    url = f"sqlite:///{folder / 'digest.db'}"
    build(url, args.issues)
    servers = {"this": start(url, folder, None)}
    if args.before:
        servers["before"] = start(url, folder, args.before)
    try:
        conns = {name: connect(port) for name, (_, port) in servers.items()}
        for path in ("/feed.xml", "/"):
            found = {name: measure(conn, path) for name, conn in conns.items()}  # warm
            for _ in range(args.runs - 1):
                for name, conn in conns.items():  # interleaved: the same load for both
                    found[name] += measure(conn, path)
            for name, times in found.items():
                print(f"{name:>6}: GET {path} at {args.issues} issues: {times.line()}")
        # The next week's issue: the feed built again, one new entry parsed (not 20).
        next_issue(url, args.issues + 1)
        for name, conn in conns.items():
            feed_ms, _ = timed(conn, "/feed.xml", {})
            archive_ms, _ = timed(conn, "/", {})
            print(f"{name:>6}: after issue #{args.issues + 1} is recorded: GET /feed.xml 200 "
                  f"{feed_ms:.1f} ms, GET / 200 {archive_ms:.1f} ms")  # fmt: skip
            conn.close()
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(15)
    statements(url, args.issues)


def start(url: str, folder: Path, src: Path | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": url,
        "DIGEST_WEB_PORT": str(port),
        "DIGEST_NEWSLETTER_SECRET_KEY": "bench",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve())
    command = [sys.executable, "-m", "digest", "serve"]
    return subprocess.Popen(command, env=env, cwd=folder, stderr=subprocess.DEVNULL), port


def connect(port: int) -> http.client.HTTPConnection:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)  # the server starting: a bench, not a test
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


@dataclass
class Times:
    full: list[float] = field(default_factory=list)
    by_tag: list[float] = field(default_factory=list)
    by_date: list[float] = field(default_factory=list)
    size: int = 0
    status: int = 0

    def __iadd__(self, other: Times) -> Times:
        self.full += other.full
        self.by_tag += other.by_tag
        self.by_date += other.by_date
        self.size, self.status = other.size, other.status
        return self

    def line(self) -> str:
        med = statistics.median
        since = f"; If-Modified-Since {med(self.by_date):.1f} ms" if self.by_date else ""
        return (f"200 {med(self.full):.1f} ms ({self.size} bytes, first {self.full[0]:.1f} ms); "
                f"If-None-Match {self.status} {med(self.by_tag):.1f} ms{since}")  # fmt: skip


def measure(conn: http.client.HTTPConnection, path: str) -> Times:
    """A full answer, then the same asked by its ETag, then by its date."""
    times = Times()
    ms, answer = timed(conn, path, {})
    times.full.append(ms)
    times.size = int(answer.getheader("content-length") or 0)
    etag, modified = answer.getheader("etag"), answer.getheader("last-modified")
    ms, answer = timed(conn, path, {"If-None-Match": etag or '"none"'})
    times.by_tag.append(ms)
    times.status = answer.status
    if modified:
        times.by_date.append(timed(conn, path, {"If-Modified-Since": modified})[0])
    return times


def statements(url: str, issues: int) -> None:
    """The statements each request costs, counted in process (an engine event)."""
    db = Database(url)
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    event.listen(db.engine, "before_cursor_execute", counted)
    settings = Settings().replace(newsletter={"secret_key": "bench"})
    with TestClient(make_app(db, settings)) as client:
        for path in ("/feed.xml", "/"):
            found = []
            etag = '"none"'
            for conditional in (False, False, True):
                count = 0
                answer = client.get(path, headers={"If-None-Match": etag} if conditional else {})
                etag = answer.headers.get("etag", '"none"')
                found.append(f"{answer.status_code}: {count}")
            print(f"statements for GET {path} at {issues} issues (first, again, conditional): "
                  + ", ".join(found))  # fmt: skip


if __name__ == "__main__":
    main()
