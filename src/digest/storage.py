"""The database: engine set-up, automatic migrations, sessions and small key/value state."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from digest.errors import StorageError
from digest.models import Meta
from digest.settingvalues import hide_password

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


@contextlib.contextmanager
def wrap_db_errors(doing: str, url: str | None = None) -> Iterator[None]:
    """Turn SQLAlchemy's exceptions into one-line StorageErrors (never showing the password
    of ``url``)."""
    try:
        yield
    except SQLAlchemyError as e:
        detail = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StorageError(f"database error while {doing}: {scrub(detail, url)}") from e


def scrub(text: str, url: str | None) -> str:
    """``text`` with the password of database ``url`` replaced by ***, wherever it appears."""
    try:
        password = make_url(url).password if url else None
    except Exception:  # noqa: BLE001 - a URL that can't be read has no password to hide
        password = None
    return text.replace(str(password), "***") if password else text


class Database:
    """One database: an engine, a session factory and the schema brought up to date."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (a no-op when up to date)."""
        if self._at_head():
            return  # importing Alembic costs a quarter second on every command
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with wrap_db_errors("migrating the schema", self.url), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _at_head(self) -> bool:
        try:
            with self.engine.connect() as conn:
                current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except SQLAlchemyError:
            return False
        return [r[0] for r in current] == [head_revision()]

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with wrap_db_errors("talking to the database", self.url), self.sessions.begin() as session:
            yield session

    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(Meta, key)
            if row is None:
                s.add(Meta(key=key, value=value, updated_at=utcnow()))
            else:
                row.value, row.updated_at = value, utcnow()

    def secret_key(self, configured: str = "") -> str:
        """The configured key, else one generated on first use and stored."""
        if configured:
            return configured
        key = self.get_meta("secret_key")
        if key is None:
            # Another process may store one first; then we read theirs.
            with contextlib.suppress(StorageError), self.session() as s:
                s.add(Meta(key="secret_key", value=secrets.token_hex(32), updated_at=utcnow()))
            key = self.get_meta("secret_key")
        assert key is not None
        return key

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        self.engine.dispose()


def head_revision() -> str:
    """The newest migration's revision id (files are numbered; the id is the number, or the
    file's stem for those added since by several branches at once)."""
    newest = max(_migration_files(), key=lambda p: p.name)
    return _revision_of(newest)


def known_revisions() -> set[str]:
    """Every migration's revision id: the schemas this version can read or upgrade."""
    return {_revision_of(path) for path in _migration_files()}


def _migration_files() -> list[Path]:
    return list((MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def _revision_of(path: Path) -> str:
    found = _REVISION.search(path.read_text())
    return found.group(1) if found else path.name.split("_")[0]


_REVISION = re.compile(r"""^revision = ["']([^"']+)["']""", re.M)


# Seconds to wait for a PostgreSQL server to accept a connection (overridden by a
# connect_timeout in database.url).
CONNECT_TIMEOUT_S = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as e:  # any parse failure is a bad setting
        raise StorageError(f"database.url is not a valid URL: {safe_url(url)}") from e
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database).expanduser())
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets a reader run beside the poller; NORMAL sync is crash-safe in WAL mode.
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers wait on busy_timeout
    # instead of failing with "database is locked" when a read transaction upgrades.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def safe_url(url: str) -> str:
    """The database URL without its password, for messages."""
    return hide_password(url)
