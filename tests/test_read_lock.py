"""Reads don't take the write lock (issue 22): on SQLite a session that only reads begins a
deferred transaction, which WAL runs beside another connection's write transaction; a writer
still takes the lock up front (BEGIN IMMEDIATE). Held deterministically: a second connection
opens a write transaction and keeps it open while the read runs.

SQLite only: PostgreSQL readers never wait for writers (MVCC), and it has no such lock."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from digest.errors import StorageError
from digest.storage import Database
from tests.conftest import run_digest
from tests.web.helpers import serving


@contextlib.contextmanager
def write_held(url: str) -> Iterator[sqlite3.Connection]:
    """Another connection inside a write transaction (a row written, not committed) until the
    block ends; then rolled back."""
    conn = sqlite3.connect(str(make_url(url).database), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO meta (key, value, updated_at) VALUES ('held', 'uncommitted', '2026-01-01')"
        )
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def statements(db: Database) -> list[str]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    return seen


def test_a_read_runs_beside_a_held_write_transaction(sqlite_db: Database) -> None:
    sqlite_db.set_meta("greeting", "hello")
    with write_held(sqlite_db.url), Database.read_only():
        assert sqlite_db.get_meta("greeting") == "hello"
        assert sqlite_db.get_meta("held") is None  # the writer's row is not committed


def test_a_reader_begins_deferred_and_cannot_write_a_writer_begins_immediate(
    sqlite_db: Database,
) -> None:
    seen = statements(sqlite_db)
    with Database.read_only():
        sqlite_db.get_meta("x")
        with pytest.raises(StorageError, match="readonly"):
            sqlite_db.set_meta("x", "written by a reader")
    sqlite_db.set_meta("x", "written by a writer")
    begins = [s for s in seen if s.startswith("BEGIN")]
    assert begins == ["BEGIN", "BEGIN", "BEGIN IMMEDIATE"]
    assert sqlite_db.get_meta("x") == "written by a writer"


def test_pages_health_metrics_and_status_answer_while_a_poll_writes(
    sqlite_url: str, workdir: Path
) -> None:
    """End to end: a real `digest serve` answers GET /, /feed.xml, /healthz and /metrics, and
    `digest status` (a real process) reports, while another connection holds a write
    transaction open (without the fix each would wait out the 30 s busy timeout)."""
    env = {"DIGEST_DATABASE_URL": sqlite_url}
    Database(sqlite_url).dispose()  # the schema
    with serving(env, workdir) as (base, _process), write_held(sqlite_url):
        for path in ("/", "/feed.xml", "/healthz", "/metrics"):
            r = httpx.get(base + path, timeout=10)
            assert r.status_code in (200, 503), (path, r.status_code, r.text)
            assert "database" not in r.text.lower() or path != "/metrics", r.text
        status = run_digest(["status", "--json"], env, workdir, timeout=20)
        assert status.returncode == 0, status.stderr
        assert '"subscribers"' in status.stdout
