"""Backups of a SQLite database while the daemon runs, and restoring one.

Both go through SQLite's online backup API (sqlite3.Connection.backup): the copy is one
consistent snapshot even while a poll writes (the database is in WAL mode, so the poll does
not wait), and a restore writes into the live file the way SQLite means it to, its WAL
included (copying the file over it would pair the new file with the old one's WAL).

A copy holds no locks: the daemon's, a send's or a poll's lock rows are left out, so a
restored database is held by nobody. On PostgreSQL, pg_dump and pg_restore do the job.

A backup to restore is hostile until checked, since SQLite files carry code: a trigger kept
in one would run on every write after the restore (one that sets an unsubscribed reader
active again makes POST /unsubscribe answer 200 and change nothing), and a recursive view
under a table's name hangs the first query. So a backup must hold exactly the tables and
indexes digest's migrations make at its schema revision, each table with its columns, and
nothing else (no view, no trigger): anything more is refused in one line, before any of its
contents is read.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from digest.errors import InputError, LockedError, StorageError
from digest.locks import LOCK_KEYS, refuse_if_held
from digest.revisions import MIGRATIONS, known_revisions
from digest.storage import Database, safe_url
from digest.words import counted

# What a copy counts, to say what it holds.
COUNTED = ("feeds", "posts", "subscribers", "issues")


@dataclass(frozen=True)
class Copy:
    """A database file and what it holds."""

    path: Path
    bytes: int
    counts: dict[str, int]

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "bytes": self.bytes, **self.counts}

    def line(self) -> str:
        held = ", ".join(counted(n, name.removesuffix("s")) for name, n in self.counts.items())
        return f"{self.path}: {self.bytes / 1e6:,.1f} MB ({held})"


def sqlite_path(url: str, doing: str) -> Path:
    """The file of a SQLite database.url; a clear error for PostgreSQL or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        verb, tool = ("back it up", "pg_dump") if doing == "backup" else ("restore", "pg_restore")
        raise InputError(
            f"database.url is PostgreSQL ({safe_url(url)}): {verb} with {tool} "
            "(README.md, 'Backups', has the commands)"
        )
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise InputError(f"{doing} works on a SQLite file; database.url is {safe_url(url)}")
    return Path(parsed.database).expanduser()


def backup(url: str, target: Path) -> Copy:
    """Copy the database at ``url`` to ``target`` (replaced if it exists, only once the copy
    is complete and checked)."""
    source = sqlite_path(url, "backup")
    if not source.exists():
        raise InputError(f"no database at {source} (database.url)")
    partial = target.with_name(f".{target.name}.partial")
    try:
        _new_private_file(partial)
        with _connect(source) as src, _connect(partial) as dst:
            src.backup(dst)
            _clean(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        os.replace(partial, target)
    except sqlite3.Error as e:
        raise StorageError(f"cannot back up {source} to {target}: {e}") from e
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror}") from e
    finally:
        partial.unlink(missing_ok=True)
    return describe(target)


def restore(url: str, source: Path, *, force: bool = False, now: datetime) -> Copy:
    """Make the database at ``url`` a copy of the backup ``source``. Refused while a daemon,
    a send or a poll holds it, and over a database holding anything unless ``force``."""
    target = sqlite_path(url, "restore")
    check_schema(source)
    copy = describe(source)
    owner = _owner_of(target)
    if target.exists():
        _refuse_if_held(url, now)
        present = describe(target)
        if any(present.counts.values()) and not force:
            raise InputError(
                f"{target} holds data ({present.line().split(' (', 1)[1]}: "
                "--force replaces it with the backup"
            )
    try:
        if not target.exists():
            _new_private_file(target)
        with _connect(source) as src, _connect(target) as dst:
            src.backup(dst)
            _clean(dst)
    except sqlite3.Error as e:
        raise StorageError(f"cannot restore {source} into {target}: {e}") from e
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror}") from e
    Database(url).dispose()  # an older backup is brought up to this version's schema
    _give_back(target, owner)
    return Copy(target, target.stat().st_size, copy.counts)


def _owner_of(target: Path) -> tuple[int, int]:
    """Who the restored database must belong to: the owner of the file it replaces, else of
    its folder (root restoring onto a fresh server must leave it to the service's user)."""
    try:
        info = (target if target.exists() else target.absolute().parent).stat()
    except OSError as e:
        raise InputError(f"cannot restore into {target}: {e.strerror}") from e
    return info.st_uid, info.st_gid


def _give_back(target: Path, owner: tuple[int, int]) -> None:
    """The restored file, and the -wal and -shm files SQLite made beside it, to ``owner``
    (only root can give files away; anyone else made them theirs, as the owner)."""
    if os.geteuid() != 0:
        return
    for path in (target, *(target.with_name(target.name + end) for end in ("-wal", "-shm"))):
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, *owner)


def describe(path: Path) -> Copy:
    """What the digest database file at ``path`` holds; InputError if it is none."""
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        with _connect(path) as conn:
            if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise InputError(f"{path} is damaged (PRAGMA quick_check failed)")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if not {*COUNTED, "meta", "alembic_version"} <= tables:
                raise InputError(f"{path} is no digest database")
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path} is no SQLite database ({e})") from e
    return Copy(path, path.stat().st_size, counts)


def check_schema(path: Path) -> None:
    """InputError unless the file holds only what digest's migrations make at its revision."""
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        with _connect(path) as conn:
            found = _schema(conn)
            code = sorted(f"{k} {n}" for k, n in found if k not in ("table", "index"))
            if code:  # views and triggers: refused before anything is read
                _refuse(path, "holds what digest does not make", code)
            if ("table", "alembic_version") not in found:
                raise InputError(f"{path} is no digest database")
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as e:
        raise InputError(f"{path} is no SQLite database ({e})") from e
    known = known_revisions()
    if revision is None or revision[0] not in known:
        schema = revision[0] if revision else "unknown"
        raise InputError(f"{path} was made by a newer digest (schema {schema}): upgrade first")
    expected = _schema_at(revision[0])
    ours = {key: shape for key, shape in found.items() if key[1] not in _SQLITE_OWN}
    foreign = sorted(f"{k} {n}" for (k, n), shape in ours.items() if expected.get((k, n)) != shape)
    if foreign:
        _refuse(path, "holds what digest does not make", foreign)
    missing = sorted(f"{k} {n}" for k, n in expected.keys() - ours.keys())
    if missing:
        _refuse(path, "lacks parts of digest's schema", missing)


def _refuse(path: Path, what: str, names: list[str]) -> None:
    more = ", ..." if len(names) > 4 else ""
    raise InputError(
        f"{path} {what} ({', '.join(names[:4])}{more}): refused, not a backup digest made"
    )


_Objects = dict[tuple[str, str], tuple[str, ...]]  # (type, name) -> its table and columns
# Tables SQLite keeps for itself (AUTOINCREMENT counters, ANALYZE's statistics).
_SQLITE_OWN = {"sqlite_sequence", "sqlite_stat1", "sqlite_stat4"}


def _schema(conn: sqlite3.Connection) -> _Objects:
    """Every object of a database: tables with their columns, the others with their table."""
    rows = conn.execute("SELECT type, name, tbl_name FROM sqlite_master").fetchall()
    found: _Objects = {}
    for kind, name, table in rows:
        if kind == "table":
            columns = conn.execute("SELECT name FROM pragma_table_info(?)", (name,)).fetchall()
            found[(kind, name)] = (table, *sorted(c[0] for c in columns))
        else:
            found[(kind, name)] = (table,)
    return found


@functools.cache
def _schema_at(revision: str) -> _Objects:
    """What digest's migrations make up to ``revision``, in a scratch database (~0.3 s)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'schema.db'}")
        try:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            engine.dispose()
        with _connect(Path(folder) / "schema.db") as conn:
            return _schema(conn)


def _refuse_if_held(url: str, now: datetime) -> None:
    db = Database(url, migrate=False)
    try:
        refuse_if_held(db, now, "restoring")
    except StorageError as e:
        if isinstance(e, LockedError):
            raise
        raise InputError(f"cannot read the database to restore into: {e}") from e
    finally:
        db.dispose()


def _new_private_file(path: Path) -> None:
    """An empty file only its owner reads: a copy holds every address and the signing key."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _clean(conn: sqlite3.Connection) -> None:
    """No process holds a copy: drop the lock rows."""
    marks = ",".join("?" * len(LOCK_KEYS))
    conn.execute(f"DELETE FROM meta WHERE key IN ({marks})", LOCK_KEYS)
    conn.commit()


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.exists():  # sqlite3 would create it
        raise InputError(f"no such file: {path}")
    conn = sqlite3.connect(path, timeout=30)
    try:
        yield conn
    finally:
        conn.close()
