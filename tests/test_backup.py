"""`digest backup` and `digest restore` end to end: real processes, a poll writing meanwhile,
a daemon holding the database."""

from __future__ import annotations

import contextlib
import json
import os
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
from tests.daemon_helpers import Farm, Running, base_env, wait_until
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Response

FEEDS = 40


def slow_farm(http: FeedServer, opml: Path) -> None:
    """FEEDS feeds of five posts each, 0.2 s to answer: a poll that takes a few seconds."""
    for i in range(FEEDS):
        site = f"https://b{i}.example"
        http.route(f"/b{i}.xml", Response(200, rss(5, f"Blog {i}", site), delay=0.2))
    write_opml(opml, [("ML", f"Blog {i}", http.url(f"/b{i}.xml")) for i in range(FEEDS)])


def lists(env: dict[str, str], cwd: Path) -> tuple[str, str]:
    feeds = run_digest(["feeds", "--json"], env, cwd)
    subscribers = run_digest(["subscribers", "list", "--json"], env, cwd)
    assert feeds.returncode == subscribers.returncode == 0, feeds.stderr + subscribers.stderr
    return feeds.stdout, subscribers.stdout


def test_a_backup_during_a_poll_restores_to_the_same_lists(workdir: Path, http: FeedServer) -> None:
    slow_farm(http, workdir / "feeds.opml")
    env = {
        "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}",
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_FEEDS_PER_HOST": "4",  # one host: the poll takes FEEDS / 4 * 0.2 s
    }
    for email in ("ada@example.com", "grace@example.org"):
        assert run_digest(["subscribers", "add", email], env, workdir).returncode == 0
    poll = subprocess.Popen(
        [sys.executable, "-m", "digest", "poll"], env=digest_env(env), cwd=workdir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: len(http.requests) >= FEEDS // 4, 30, "the poll under way")
    during = run_digest(["backup", "-o", "during.db", "--json"], env, workdir)
    assert poll.poll() is None, "the poll ended before the backup: make it slower"
    out, err = poll.communicate(timeout=60)
    assert poll.returncode == 0 and "0 errors" in out, out + err  # the poll never waited
    copy = json.loads(during.stdout)
    assert copy["bytes"] == (workdir / "during.db").stat().st_size > 0
    assert copy["subscribers"] == 2 and 0 <= copy["posts"] < FEEDS * 5
    with sqlite3.connect(workdir / "during.db") as conn:  # one moment, whole; held by nobody
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE '%lock'").fetchone() == (0,)
    assert (workdir / "during.db").stat().st_mode & 0o777 == 0o600

    quiet = run_digest(["backup", "-o", "after.db"], env, workdir)
    assert quiet.returncode == 0
    assert quiet.stdout.startswith("backed up to after.db: 0.2 MB (")
    assert f"{FEEDS} feeds, {FEEDS * 5} posts, 2 subscribers" in quiet.stdout
    elsewhere = {**env, "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'restored.db'}"}
    restored = run_digest(["restore", "after.db"], elsewhere, workdir)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored after.db into {workdir / 'restored.db'}: ")
    assert lists(elsewhere, workdir) == lists(env, workdir)
    # The copy made mid-poll restores too, and a poll from it finishes the job.
    midway = {**env, "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'midway.db'}"}
    assert run_digest(["restore", "during.db"], midway, workdir).returncode == 0
    assert run_digest(["poll"], midway, workdir).returncode == 0
    posts = json.loads(run_digest(["feeds", "--json"], midway, workdir).stdout)
    assert len(posts) == FEEDS and all(f["posts"] == 5 for f in posts)


def test_restore_refuses_a_database_the_daemon_holds_and_one_with_data(
    workdir: Path, farm: Farm, runs: list[Running]
) -> None:
    url = f"sqlite:///{workdir / 'digest.db'}"
    env = base_env(workdir, url, farm)
    assert run_digest(["poll"], env, workdir).returncode == 0
    assert run_digest(["backup", "-o", "copy.db"], env, workdir).returncode == 0
    daemon = Running(env, workdir, workdir / "run.log")
    runs.append(daemon)
    daemon.wait_log(lambda r: r.get("event") == "poll", 60)
    refused = run_digest(["restore", "copy.db", "--force"], env, workdir)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert (
        "the digest daemon holds" in refused.stderr and "stop it before restoring" in refused.stderr
    )
    assert daemon.terminate()[0] == 0
    held_data = run_digest(["restore", "copy.db"], env, workdir)
    assert held_data.returncode == 1 and "--force replaces it" in held_data.stderr
    forced = run_digest(["restore", "copy.db", "--force"], env, workdir)
    assert forced.returncode == 0, forced.stderr


def test_backup_and_restore_say_what_they_cannot_do(workdir: Path) -> None:
    pg = {"DIGEST_DATABASE_URL": "postgresql://digest:secret@db.example/digest"}
    backup = run_digest(["backup", "-o", "x.db"], pg, workdir)
    assert backup.returncode == 1 and "pg_dump" in backup.stderr and "secret" not in backup.stderr
    assert "pg_restore" in run_digest(["restore", "x.db"], pg, workdir).stderr
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}"}
    (workdir / "notes.txt").write_text("not a database\n" * 100)
    cases = {
        "no-such.db": "no such file: no-such.db",
        "notes.txt": "notes.txt is no SQLite database",
    }
    for name, said in cases.items():
        result = run_digest(["restore", name], env, workdir)
        assert result.returncode == 1 and result.stderr.startswith(f"Error: {said}")
        assert said in result.stderr and "Traceback" not in result.stderr
    missing = run_digest(["backup", "-o", "nowhere/x.db"], env, workdir)
    assert missing.returncode == 1 and "no database at" in missing.stderr


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
