"""`digest run` and its signals from its first instruction: SIGTERM at each point of start-up
ends it cleanly (exit 0, a "stopped" line, nothing half-written).

Each test holds the daemon at one start-up step with something real it waits for: its config
file or feed list is a FIFO the test has not written yet, or the test holds SQLite's write lock,
or a feed server holds the first poll's request. The SIGTERM goes in while the step cannot end,
so the daemon notes it during that step, wherever the machine's scheduler puts it.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from digest.revisions import head_revision
from tests.conftest import wait_for
from tests.daemon_helpers import Farm, Running, base_env
from tests.poll_helpers import rss
from tests.servers import FeedServer, Request, Response

pytestmark = pytest.mark.slow


def fifo(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def write_fifo(path: Path, data: bytes, timeout: float = 30) -> None:
    """Write ``data`` into the FIFO once its reader has it open, then close it (EOF)."""
    fd: list[int] = []

    def opened() -> bool:
        try:
            fd.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            assert e.errno == errno.ENXIO  # no reader yet
            return False
        return True

    wait_for(opened, timeout, what=f"digest to open {path.name}")
    os.set_blocking(fd[0], True)
    try:
        os.write(fd[0], data)
    finally:
        os.close(fd[0])


def start_up_line(step: str) -> object:
    return lambda r: r["message"] == f"start-up: {step}"


def assert_stopped_after(run: Running, step: str) -> None:
    assert run.wait(15) == 0, run.text()
    messages = [r["message"] for r in run.records()]
    assert f"SIGTERM received during start-up, after {step}: stopping" in messages
    assert messages[-1] == "stopped", messages
    assert not [r for r in run.records() if r["level"] in ("error", "critical", "raw")]


def daemon_at(env: dict[str, str], workdir: Path, step: str) -> Running:
    """`digest run` (debug log), once it says it is at ``step`` of its start-up."""
    run = Running(env, workdir, workdir / "run.log", log_level="debug")
    run.wait_log(start_up_line(step), 30)  # type: ignore[arg-type]
    return run


def test_sigterm_while_the_settings_are_read(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, sqlite_url, farm)
    config = fifo(workdir / "digest.toml")
    runs.append(
        run := daemon_at(env | {"DIGEST_CONFIG": str(config)}, workdir, "reading the settings")
    )
    run.signal(signal.SIGTERM)
    write_fifo(config, b"[web]\nenabled = false\n")
    assert_stopped_after(run, "reading the settings")
    assert not (workdir / "digest.db").exists()  # nothing written at all


def test_sigterm_while_the_feed_list_is_read(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, sqlite_url, farm)
    opml = fifo(workdir / "fifo.opml")
    env["DIGEST_FEEDS_OPML"] = str(opml)
    runs.append(run := daemon_at(env, workdir, "reading the feed list"))
    run.signal(signal.SIGTERM)
    write_fifo(opml, (workdir / "feeds.opml").read_bytes())
    assert_stopped_after(run, "reading the feed list")
    assert not (workdir / "digest.db").exists()


def test_sigterm_while_the_database_is_migrated(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    env = base_env(workdir, sqlite_url, farm)
    path = workdir / "digest.db"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")  # the daemon's first transaction waits for this one
    try:
        runs.append(run := daemon_at(env, workdir, "opening the database"))
        run.signal(signal.SIGTERM)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_stopped_after(run, "opening the database")
    with sqlite3.connect(path) as conn:  # migrated to the end, and no daemon ever ran on it
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]
        assert conn.execute("SELECT key FROM meta").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_sigterm_while_the_first_poll_is_under_way(
    workdir: Path, sqlite_url: str, http: FeedServer, runs: list[Running]
) -> None:
    farm = Farm(http)
    env = base_env(workdir, sqlite_url, farm)
    reached, release = threading.Event(), threading.Event()

    def held(_req: Request) -> Response:
        reached.set()
        release.wait(30)
        return Response(200, rss(2, "Held", "https://held.example"))

    http.route("/ml.xml", held)  # one of the farm's three feeds answers when the test says
    run = Running(env, workdir, workdir / "run.log")
    runs.append(run)
    try:
        assert reached.wait(30), run.text()  # the jobs run: a poll is under way
        run.signal(signal.SIGTERM)
        run.wait_log(lambda r: r["message"] == "SIGTERM received", 10)
    finally:
        release.set()
    assert run.wait(10) == 0, run.text()
    records = run.records()
    assert records[-1]["message"] == "stopped" and records[-1]["abandoned"] is False
    assert any(r.get("event") == "start" for r in records)
    with sqlite3.connect(workdir / "digest.db") as conn:  # the lock let go; the data whole
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'daemon_lock'").fetchone() == (
            0,
        )
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
