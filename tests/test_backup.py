"""`digest backup` and `digest restore` end to end: real processes, a poll writing meanwhile,
a daemon holding the database."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.errors import StorageError
from digest.storage import Database
from tests.conftest import digest_env, run_cli, run_digest
from tests.daemon_helpers import Farm, Running, base_env
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Response

FEEDS = 40


def many_feeds(http: FeedServer, opml: Path) -> None:
    """FEEDS feeds of five posts each."""
    for i in range(FEEDS):
        site = f"https://b{i}.example"
        http.route(f"/b{i}.xml", Response(200, rss(5, f"Blog {i}", site)))
    write_opml(opml, [("ML", f"Blog {i}", http.url(f"/b{i}.xml")) for i in range(FEEDS)])


def cli(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output
    return result.stdout


def lists(env: dict[str, str]) -> tuple[str, str]:
    return cli(["feeds", "--json"], env), cli(["subscribers", "list", "--json"], env)


def test_a_backup_during_a_poll_restores_to_the_same_lists(workdir: Path, http: FeedServer) -> None:
    many_feeds(http, workdir / "feeds.opml")
    env = {
        "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}",
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
    }
    for email in ("ada@example.com", "grace@example.org"):
        cli(["subscribers", "add", email], env)
    http.hold_after(FEEDS // 2)  # half the feeds answer; the poll waits on the rest
    poll = subprocess.Popen(
        [sys.executable, "-m", "digest", "poll"], env=digest_env(env), cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert http.held.wait(30), "the poll never got half way"
        during = run_digest(["backup", "-o", "during.db", "--json"], env, workdir)
        assert poll.poll() is None  # the poll, held, is still under way
    finally:
        http.release()
    out, err = poll.communicate(timeout=60)
    assert poll.returncode == 0 and "0 errors" in out, out + err  # the poll never waited
    assert during.returncode == 0, during.stderr
    copy = json.loads(during.stdout)
    assert copy["bytes"] == (workdir / "during.db").stat().st_size > 0
    assert copy["subscribers"] == 2 and 0 <= copy["posts"] < FEEDS * 5
    with sqlite3.connect(workdir / "during.db") as conn:  # one moment, whole; held by nobody
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE '%lock'").fetchone() == (0,)
    assert (workdir / "during.db").stat().st_mode & 0o777 == 0o600

    quiet = cli(["backup", "-o", "after.db"], env)
    assert re.match(r"backed up to after\.db: 0\.[23] MB \(", quiet), quiet  # schema's pages
    assert f"{FEEDS} feeds, {FEEDS * 5} posts, 2 subscribers" in quiet
    elsewhere = {**env, "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'restored.db'}"}
    restored = run_digest(["restore", "after.db"], elsewhere, workdir)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored after.db into {workdir / 'restored.db'}: ")
    assert lists(elsewhere) == lists(env)
    # The copy made mid-poll restores too, and a poll from it finishes the job.
    midway = {**env, "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'midway.db'}"}
    cli(["restore", "during.db"], midway)
    cli(["poll"], midway)
    posts = json.loads(cli(["feeds", "--json"], midway))
    assert len(posts) == FEEDS and all(f["posts"] == 5 for f in posts)


def test_restore_refuses_a_database_the_daemon_holds_and_one_with_data(
    workdir: Path, farm: Farm, runs: list[Running]
) -> None:
    url = f"sqlite:///{workdir / 'digest.db'}"
    env = base_env(workdir, url, farm)
    cli(["poll"], env)
    cli(["backup", "-o", "copy.db"], env)
    daemon = Running(env, workdir, workdir / "run.log")
    runs.append(daemon)
    daemon.wait_log(lambda r: r.get("event") == "start", 60)  # its lock is taken by then
    refused = run_cli(["restore", "copy.db", "--force"], env)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert (
        "the digest daemon holds" in refused.stderr and "stop it before restoring" in refused.stderr
    )
    assert daemon.terminate()[0] == 0
    held_data = run_cli(["restore", "copy.db"], env)
    assert held_data.exit_code == 1 and "--force replaces it" in held_data.stderr
    forced = run_cli(["restore", "copy.db", "--force"], env)
    assert forced.exit_code == 0, forced.output


def test_backup_and_restore_say_what_they_cannot_do(workdir: Path) -> None:
    pg = {"DIGEST_DATABASE_URL": "postgresql://digest:secret@db.example/digest"}
    backup = run_cli(["backup", "-o", "x.db"], pg)
    assert backup.exit_code == 1 and "pg_dump" in backup.stderr and "secret" not in backup.stderr
    assert "pg_restore" in run_cli(["restore", "x.db"], pg).stderr
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}"}
    (workdir / "notes.txt").write_text("not a database\n" * 100)
    cases = {
        "no-such.db": "no such file: no-such.db",
        "notes.txt": "notes.txt is no SQLite database",
    }
    for name, said in cases.items():
        result = run_cli(["restore", name], env)
        assert result.exit_code == 1 and result.stderr.startswith(f"Error: {said}")
        assert said in result.stderr and "Traceback" not in result.stderr
    missing = run_cli(["backup", "-o", "nowhere/x.db"], env)
    assert missing.exit_code == 1 and "no database at" in missing.stderr


NOBODY = 65534  # the service's user in these tests: a uid that is not root's


@contextlib.contextmanager
def acting_as(uid: int) -> Iterator[None]:
    """This process's effective user and group for a moment (root only): what the files say
    to the service's user."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def server_folder() -> Iterator[Path]:
    """A fresh server's state folder, the service user's (where tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="digest-srv-"))
    os.chmod(folder, 0o755)
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: restore as root, open as another user")
def test_restore_as_root_leaves_the_database_to_its_owner(
    workdir: Path, server_folder: Path
) -> None:
    """Issue 24: `digest restore` as root onto a fresh server left digest.db root's (0600), and
    the service user failed with "unable to open database file"."""
    source = f"sqlite:///{workdir / 'digest.db'}"
    assert run_cli(["subscribers", "add", "ann@example.com"], {"DIGEST_DATABASE_URL": source})
    assert run_cli(["backup", "-o", "copy.db"], {"DIGEST_DATABASE_URL": source}).exit_code == 0
    url = f"sqlite:///{server_folder / 'digest.db'}"
    env = {"DIGEST_DATABASE_URL": url}

    restored = run_cli(["restore", str(workdir / "copy.db")], env)  # as root, a fresh server
    assert restored.exit_code == 0, restored.output
    made = [p for p in server_folder.iterdir()]
    assert made and all(p.stat().st_uid == NOBODY for p in made), made
    assert (server_folder / "digest.db").stat().st_mode & 0o777 == 0o600
    with acting_as(NOBODY):
        db = Database(url, create=False)  # the service user opens it, and writes
        db.set_meta("opened", "by the service user")
        assert db.get_meta("opened") == "by the service user"
        db.dispose()

    again = run_cli(["restore", str(workdir / "copy.db"), "--force"], env)  # over its file
    assert again.exit_code == 0
    assert all(p.stat().st_uid == NOBODY for p in server_folder.iterdir())

    # A database left root's (copied by hand): the error names the owner, not "unable to open".
    (server_folder / "digest.db").unlink()
    shutil.copy(workdir / "copy.db", server_folder / "digest.db")
    os.chmod(server_folder / "digest.db", 0o600)
    with acting_as(NOBODY), pytest.raises(StorageError) as refused:
        Database(url, create=False)
    assert str(refused.value) == (
        f"cannot open {server_folder / 'digest.db'}: it belongs to root (mode 0600) and digest "
        f"runs as nobody; chown nobody {server_folder / 'digest.db'} (and its -wal and -shm "
        "files), or run digest as its owner"
    )
