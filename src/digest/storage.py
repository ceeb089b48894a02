"""The database: engine set-up, automatic migrations, sessions and small key/value state."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    NotSupportedError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from digest.errors import NoDatabaseError, StorageError
from digest.revisions import MIGRATIONS, head_revision
from digest.settingvalues import hide_password, url_passwords
from digest.tables import META

# The ORM is loaded by the first session() only: sqlalchemy.orm and the mapped classes were
# 109 ms of a warm poll's imports (-X importtime, median of 5), the poll uses Core alone.
if TYPE_CHECKING:
    from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

log = logging.getLogger(__name__)


@contextlib.contextmanager
def wrap_db_errors(doing: str, url: str | None = None) -> Iterator[None]:
    """Turn what the database does (see is_operational) into one-line StorageErrors (never
    showing the password of ``url``); a bug of ours (bad SQL, a misused session) propagates
    as the bug it is, its traceback and all."""
    try:
        yield
    except SQLAlchemyError as e:
        if not is_operational(e):
            raise
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StorageError(f"database error while {doing}: {scrub(detail, url)}") from e


def is_operational(error: SQLAlchemyError) -> bool:
    """Whether an error comes from the database or the data rather than from our code: the
    server gone or locked (OperationalError, InterfaceError, a dropped connection, the pool
    exhausted), a constraint or a value it refuses (IntegrityError, DataError: a race, a
    hostile value), a fault inside it (InternalError), a file that is not a database. Bad SQL
    (ProgrammingError, NotSupportedError) and a misused API (InvalidRequestError and the other
    errors SQLAlchemy raises itself) are bugs."""
    if isinstance(error, DisconnectionError | PoolTimeoutError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    return not isinstance(error, ProgrammingError | NotSupportedError)


def scrub(text: str, url: str | None) -> str:
    """``text`` with the passwords of database ``url`` (its user part's, a ``password=``
    parameter's) replaced by ***, wherever they appear."""
    if not url:
        return text
    text = text.replace(url, hide_password(url))
    for password in url_passwords(url):
        text = text.replace(password, "***")
    return text


class Database:
    """One database: an engine, the schema brought up to date, and transactions on it: Core
    connections (``begin``) or ORM sessions (``session``, whose factory is made on first use).

        With ``create`` false (the commands that only read) a database that is not there yet is
        a StorageError saying so, and nothing is created: no empty file, no tables."""

    def __init__(self, url: str, *, migrate: bool = True, create: bool = True) -> None:
        self.url = url
        self.engine = _make_engine(url, create=create)
        self._sessions: sessionmaker[Session] | None = None
        if not create and not self._has_schema():
            self.dispose()
            raise NoDatabaseError(f"no digest database in {safe_url(url)} yet: {CREATED_BY}")
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (a no-op when up to date). A SQLite
        database of an older schema is copied first, beside it (the way back to the version
        that made it)."""
        current = self._revision()
        if current == head_revision():
            return  # importing Alembic costs a quarter second on every command
        if current is not None and self.is_sqlite:
            self._copy_before_upgrade(current)
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with wrap_db_errors("migrating the schema", self.url), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _has_schema(self) -> bool:
        with wrap_db_errors("opening the database", self.url), self.read_only():
            return inspect(self.engine).has_table("alembic_version")

    def _revision(self) -> str | None:
        """The schema's revision; None for a database without one (new, or not digest's)."""
        try:
            with self.read_only(), self.engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except SQLAlchemyError:
            return None
        return rows[0][0] if len(rows) == 1 else None

    def _copy_before_upgrade(self, current: str) -> None:
        """digest.db -> digest.db.before-HEAD (readable by its owner only), once."""
        path = Path(str(make_url(self.url).database)).expanduser()
        copy = path.with_name(f"{path.name}.before-{head_revision()}")
        try:
            os.close(os.open(copy, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return  # another process upgrading at the same moment made it
        except OSError as e:
            raise StorageError(f"cannot copy {path} before upgrading its schema: {e}") from e
        with (
            contextlib.closing(sqlite3.connect(path)) as src,
            contextlib.closing(sqlite3.connect(copy)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        log.warning(
            "upgrading the schema of %s from %s to %s; the database as it was is in %s (the "
            "way back to the older digest; delete it when you no longer need it)",
            path,
            current,
            head_revision(),
            copy,
        )

    @staticmethod
    @contextlib.contextmanager
    def read_only() -> Iterator[None]:
        """Within this block (this thread, or the task and the threads it hands work to) every
        SQLite transaction is a reader's: a deferred BEGIN, which in WAL mode runs beside the
        poller's writes instead of waiting for its write lock, and any write in it is an
        error ("attempt to write a readonly database") rather than a lock taken mid-way."""
        token = _READ_ONLY.set(True)
        try:
            yield
        finally:
            _READ_ONLY.reset(token)

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A Core connection in a transaction: committed on success, rolled back on error
        (what ``session`` does, without the ORM: the poll's way in)."""
        with wrap_db_errors("talking to the database", self.url), self.engine.begin() as conn:
            yield conn

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            from sqlalchemy.orm import sessionmaker

            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with wrap_db_errors("talking to the database", self.url), self.sessions.begin() as session:
            yield session

    def delete_in_batches(
        self,
        id_column: Column[int] | InstrumentedAttribute[int],
        *where: ColumnElement[bool],
        batch: int,
    ) -> int:
        """Delete the rows of ``id_column``'s table that match ``where``, ``batch`` at a time,
        each batch its own short transaction (a prune never holds the write lock for long, nor
        makes a WAL file the size of everything it deletes); how many."""
        table = id_column.table
        deleted = 0
        while True:
            with self.begin() as conn:
                ids = conn.scalars(select(id_column).where(*where).limit(batch)).all()
                if ids:
                    result = conn.execute(delete(table).where(id_column.in_(ids), *where))
                    deleted += int(getattr(result, "rowcount", 0) or 0)
            if len(ids) < batch:
                return deleted

    def get_meta(self, key: str) -> str | None:
        with self.begin() as conn:
            return conn.scalar(select(META.c.value).where(META.c.key == key))

    def set_meta(self, key: str, value: str) -> None:
        now = utcnow()
        with self.begin() as conn:
            update_row = update(META).where(META.c.key == key)
            if not conn.execute(update_row.values(value=value, updated_at=now)).rowcount:
                conn.execute(insert(META).values(key=key, value=value, updated_at=now))

    def meta_once(self, key: str, make: Callable[[], str]) -> str:
        """The value stored under ``key``, storing ``make()`` there first when there is none
        (two processes may race: the first to store wins, and both read its value)."""
        value = self.get_meta(key)
        if value is None:
            with contextlib.suppress(StorageError), self.begin() as conn:
                conn.execute(insert(META).values(key=key, value=make(), updated_at=utcnow()))
            value = self.get_meta(key)
        assert value is not None
        return value

    def dispose(self) -> None:
        self.engine.dispose()


# Seconds to wait for a PostgreSQL server to accept a connection (overridden by a
# connect_timeout in database.url).
CONNECT_TIMEOUT_S = 10


_T = TypeVar("_T")


def in_pieces(values: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``values`` ``size`` at a time: the IN lists of one lookup or update, each under SQLite's
    oldest limit of 999 parameters a statement."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def utcnow() -> datetime:
    return datetime.now(UTC)


# What a read-only command says when there is no database yet.
CREATED_BY = "nothing to show yet (`digest poll` or `digest run` creates it)"


def _make_engine(url: str, *, create: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as e:  # any parse failure is a bad setting
        raise StorageError(f"database.url is not a valid URL: {safe_url(url)}") from e
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database).expanduser()
            if not create and not path.exists():
                relative = "" if path.is_absolute() else ", relative to the working directory"
                where = f"{path.absolute()} (database.url{relative})"
                raise NoDatabaseError(f"no database at {where}: {CREATED_BY}")
            _private_file(path)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # A server that does not answer (a host down, a firewall dropping packets) is an
            # error after this long, not a daemon and a /healthz that hang for minutes.
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(url, **kwargs)
    except Exception as e:  # missing driver, bad URL parts
        raise StorageError(f"cannot open database {safe_url(url)}: {scrub(str(e), url)}") from e
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _private_file(path: Path) -> None:
    """Create a new SQLite file readable by its owner only (it holds every subscriber's address
    and the key that signs their links; SQLite gives its -wal and -shm files the same mode);
    say so when an existing one is readable by others."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise StorageError(f"database.url: folder {folder} does not exist")
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return
    except FileExistsError:
        pass
    except OSError as e:
        raise StorageError(f"database.url: cannot create {path}: {e.strerror}") from e
    _check_ownership(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 and str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning(
            "%s can be read by other users (mode %04o): it holds subscribers' addresses and "
            "the key that signs their links; chmod 600 it",
            path,
            mode,
        )


_WARNED: set[str] = set()


def _check_ownership(path: Path) -> None:
    """A database file this user cannot read and write, or in a folder where SQLite cannot
    make its -wal file, is a StorageError naming the owners (SQLite would only say "unable to
    open database file"), e.g. a file restored by root and left root's."""
    me = _user(os.geteuid())
    if not _can(path, os.R_OK | os.W_OK):
        raise StorageError(
            f"cannot open {path}: it belongs to {_owner(path)} and digest runs as {me}; "
            f"chown {me} {path} (and its -wal and -shm files), or run digest as its owner"
        )
    wal = path.with_name(path.name + "-wal")
    folder = path.absolute().parent
    if not wal.exists() and not _can(folder, os.W_OK | os.X_OK):
        raise StorageError(
            f"cannot open {path}: SQLite makes {wal.name} beside it, and its folder {folder} "
            f"belongs to {_owner(folder)}, not writable by {me}, who runs digest"
        )


def _can(path: Path, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _owner(path: Path) -> str:
    info = path.stat()
    return f"{_user(info.st_uid)} (mode {info.st_mode & 0o777:04o})"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets a reader run beside the poller; NORMAL sync is crash-safe in WAL mode.
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# True while the current context only reads (Database.read_only).
_READ_ONLY: ContextVar[bool] = ContextVar("digest_read_only", default=False)


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers wait on busy_timeout
    # instead of failing with "database is locked" when a read transaction upgrades. A reader
    # takes no lock: behind a poll's write transaction it would wait for all of it (a page read
    # during a poll took 2.04 s behind a long writer).
    read_only = _READ_ONLY.get()
    if conn.info.get("query_only", False) != read_only:
        conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
        conn.info["query_only"] = read_only
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def safe_url(url: str) -> str:
    """The database URL without its password, for messages."""
    return hide_password(url)
