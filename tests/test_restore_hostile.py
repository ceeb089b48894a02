"""`digest restore` of a crafted backup: only digest's own tables and indexes are accepted, in
one line, before anything in the file runs (issue 23)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from digest.delivery.subscribers import add_subscriber
from digest.storage import Database
from tests.conftest import run_cli

# Sets an unsubscribed reader active again: POST /unsubscribe would answer 200, change nothing.
TRIGGER = """CREATE TRIGGER stay AFTER UPDATE OF status ON subscribers
BEGIN UPDATE subscribers SET status = 'active' WHERE id = NEW.id; END"""
RECURSIVE = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT x AS id FROM n"


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """A real backup of a database with one subscriber."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    db = Database(url)
    add_subscriber(db, "ann@example.com")
    db.dispose()
    result = run_cli(["backup", "-o", str(tmp_path / "copy.db")], {"DIGEST_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return tmp_path / "copy.db"


def crafted(backup: Path, *statements: str) -> Path:
    with sqlite3.connect(backup) as conn:
        for statement in statements:
            conn.execute(statement)
    return backup


def restore(backup: Path, tmp_path: Path) -> tuple[int, str, Path]:
    target = tmp_path / "restored.db"
    result = run_cli(["restore", str(backup)], {"DIGEST_DATABASE_URL": f"sqlite:///{target}"})
    return result.exit_code, result.output, target


@pytest.mark.timeout(60)  # before the check, the recursive view hung the restore
@pytest.mark.parametrize(
    ("statements", "named"),
    [
        ((TRIGGER,), "trigger stay"),
        (("DROP TABLE feeds", f"CREATE VIEW feeds AS {RECURSIVE}"), "view feeds"),
        ((f"CREATE VIEW spin AS {RECURSIVE}",), "view spin"),
        (("CREATE TABLE extra (x)",), "table extra"),
        (("ALTER TABLE subscribers ADD COLUMN note TEXT",), "table subscribers"),
        (("CREATE INDEX ix_odd ON subscribers (name)",), "index ix_odd"),
        (("DROP TABLE bounce_events",), "table bounce_events"),  # missing
    ],
)
def test_a_crafted_backup_is_refused_in_one_line(
    backup: Path, tmp_path: Path, statements: tuple[str, ...], named: str
) -> None:
    code, output, target = restore(crafted(backup, *statements), tmp_path)
    assert code == 1
    assert output.count("\n") == 1 and named in output and "refused" in output, output
    assert not target.exists()


def test_digests_own_backup_is_restored(backup: Path, tmp_path: Path) -> None:
    crafted(backup, "ANALYZE")  # SQLite's own statistics tables are fine
    code, output, target = restore(backup, tmp_path)
    assert code == 0, output
    listed = run_cli(["subscribers", "list"], {"DIGEST_DATABASE_URL": f"sqlite:///{target}"})
    assert "ann@example.com" in listed.output
