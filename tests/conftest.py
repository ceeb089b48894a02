"""Fixtures: a database URL on each backend, loopback HTTP and SMTP servers, a CLI runner.

The rules the tests follow (events not sleeps, a process only where the process is the subject,
PostgreSQL only where the database is the subject) are in tests/README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from digest.storage import Database
from digest.web.outbox import Outbox
from tests.servers import FeedServer, SMTPSink

# The farm and runs fixtures of the daemon tests; the browser fixture of the browser tests.
pytest_plugins = ["tests.daemon_helpers", "tests.browser_helpers"]

PG_URL = os.environ.get("DIGEST_TEST_DATABASE_URL", "")
# The test servers listen on loopback, which the network policy refuses by default.
LOOPBACK = "127.0.0.0/8"
LOOPBACK_ENV = {"DIGEST_FEEDS_ALLOW_NETWORKS": LOOPBACK}
# A feed body holding this kills the parser process that parses it (digest.ingest.worker's
# test hook): set in every test's environment and every `digest` process's, so the parser
# workers (started from a forkserver that keeps the environment it began with) all know it.
PARSER_KILLER = "<!-- digest test: this body kills its parser -->"
TEST_ENV = LOOPBACK_ENV | {"DIGEST_TEST_PARSER_CRASH_MARKER": PARSER_KILLER}
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def wait_for(
    check: Callable[[], object], timeout: float = 10.0, *, what: str = "it", every: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds. For a condition
    with no event to wait on (a row stored, a process gone); the one polling wait."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_url() -> str:
    url = PG_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own. Only where the
    database is the subject (tests/README.md); else sqlite_url."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(_pg_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in _pg_url() else "?"
    yield f"{_pg_url()}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database on db_url, migrated (each backend)."""
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet: for tests whose subject is not the database."""
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    """A Database on SQLite, migrated: for tests whose subject is not the database."""
    database = Database(sqlite_url)
    yield database
    database.dispose()


@pytest.fixture
def http() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture
def smtp() -> Iterator[SMTPSink]:
    sink = SMTPSink()
    yield sink
    sink.close()


@pytest.fixture(autouse=True)
def digest_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test runs in an empty folder of its own (no digest.toml of the operator's), with
    no DIGEST_* variable of the shell running the tests, and loopback allowed."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("DIGEST_") and name != "DIGEST_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Every outbox made by a test's body (an app's, a command's) has its worker stopped when
    the body ends, before its fixtures (SMTP sink, database) are torn down; those of a fixture
    (a module's server) live on. One left running once failed a later test in the same xdist
    worker: its failed welcome email was logged into that test's CliRunner output."""
    made: list[Outbox] = []
    make = Outbox.__init__

    def recorded(outbox: Outbox, *args: Any, **kwargs: Any) -> None:
        make(outbox, *args, **kwargs)
        made.append(outbox)

    Outbox.__init__ = recorded  # type: ignore[method-assign,assignment]
    try:
        return (yield)
    finally:
        Outbox.__init__ = make  # type: ignore[method-assign]
        for outbox in made:
            _stop_worker(outbox)


def _stop_worker(outbox: Outbox) -> None:
    """The worker ends after the job it is on; what is queued is dropped (the test is over, its
    database and SMTP sink may be gone: close() would keep them in the database)."""
    outbox._deadline = 0.0
    outbox._stopping.set()
    thread = outbox._thread
    if thread is None or not thread.is_alive():
        return
    with contextlib.suppress(queue.Full):
        outbox.jobs.put_nowait(None)
    thread.join(30)
    assert not thread.is_alive(), "an outbox worker did not stop within 30 s of its test's end"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (no digest.toml of the operator's)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(args: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """Run the CLI in this process (fast); env adds DIGEST_* variables."""
    from digest.cli import cli

    return CliRunner().invoke(cli, args, env=env, input=stdin, catch_exceptions=False)


def cli_json(args: list[str], env: dict[str, str]) -> Any:
    """A set-up step's --json answer, in this process: stdout alone (a line logged on stderr,
    by this command or a thread an earlier test left, is not JSON)."""
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def digest_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a `digest` process: this one's without its DIGEST_* variables,
    loopback allowed (the test servers), then ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return full_env | TEST_ENV | env


def run_python(
    code: str, args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` in `digest`'s environment (digest_env): a harness that patches
    digest, then runs a command in its process."""
    return _python(["-c", code, *args], env, cwd, 120)


def run_digest(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `digest` as a real process, the way a user does."""
    return _python(["-m", "digest", *args], env, cwd, timeout)


def _python(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env=digest_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class HeldPoll:
    """A `digest poll` held at the feed server while a second one ran: both outcomes."""

    second: subprocess.CompletedProcess[str]
    first_pid: int
    first_code: int
    first_out: str
    first_err: str


def poll_while_one_is_held(env: dict[str, str], cwd: Path, http: FeedServer) -> HeldPoll:
    """Start a `digest poll` process, hold its requests at ``http`` (so it holds the poll
    lock), run a second `digest poll` meanwhile, then let the first finish."""
    http.hold_after(0)
    first = subprocess.Popen(
        [sys.executable, "-m", "digest", "poll", "--json"],
        env=digest_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert http.held.wait(30), "the first poll sent no request"
        second = run_digest(["poll"], env, cwd)
    finally:
        http.release()
        out, err = first.communicate(timeout=60)
    return HeldPoll(second, first.pid, first.returncode, out, err)


def session_processes(sid: int) -> list[int]:
    """The pids of the live processes in session ``sid`` (a process started with
    start_new_session=True and everything it started: forkserver, parser workers, ...)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # After the command: state, ppid, pgrp, session (proc(5)); zombies are gone already.
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
