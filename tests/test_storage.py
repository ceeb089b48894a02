from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from digest.models import Base
from digest.revisions import head_revision
from digest.storage import Database


def test_migrations_match_models(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.migrate()  # idempotent
    db.dispose()


def test_the_signing_key_is_generated_once_unless_configured(db_url: str) -> None:
    from digest.config import Settings
    from digest.delivery.tokens import signing_key

    db = Database(db_url)
    key = signing_key(db, Settings())
    assert len(key) == 64 and db.get_meta("secret_key") == key
    assert signing_key(Database(db_url), Settings()) == key  # every process on it: the same
    configured = Settings().replace(newsletter={"secret_key": "configured"})
    assert signing_key(db, configured) == "configured"


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_revision_ids_are_the_file_prefixes() -> None:
    # Database.migrate skips Alembic when the stored revision is head_revision().
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from digest.revisions import MIGRATIONS, head_revision

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    for script in scripts.walk_revisions():
        assert script.path is not None
        # The number alone, or (migrations added by several branches at once) the file's stem.
        name = Path(script.path).name
        assert name.startswith(script.revision + "_") or name == script.revision + ".py"
    assert scripts.get_current_head() == head_revision()


def schema(db: Database) -> dict[str, object]:
    """Every table's columns (name, type, nullable), indexes and foreign keys, and the
    revision: what a migration step changes."""
    from sqlalchemy import inspect

    with db.engine.connect() as conn:
        seen = inspect(conn)
        tables = sorted(t for t in seen.get_table_names() if t != "alembic_version")
        shape: dict[str, object] = {
            t: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in seen.get_columns(t)],
                sorted((i["name"] or "", tuple(i["column_names"])) for i in seen.get_indexes(t)),
                sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in seen.get_foreign_keys(t)
                ),
            )
            for t in tables
        }
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    shape["alembic_version"] = [r[0] for r in version]
    return shape


def test_each_downgrade_undoes_its_upgrade(db_url: str) -> None:
    """Up one revision at a time from nothing, then down one at a time: each step down
    leaves the schema exactly as it was before that step up; then up again to the models."""
    from alembic import command
    from alembic.config import Config

    from digest.revisions import MIGRATIONS

    db = Database(db_url, migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def step(move: str) -> dict[str, object]:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.upgrade if move.startswith("+") else command.downgrade)(cfg, move)
        return schema(db)

    with db.engine.begin() as conn:  # the version table, empty: the state before 0001
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "base")
    shapes = [schema(db)]
    while shapes[-1]["alembic_version"] != [head_revision()]:
        shapes.append(step("+1"))
    for before in reversed(shapes[:-1]):
        assert step("-1") == before
    db.migrate()
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def test_an_older_sqlite_schema_is_copied_before_it_is_upgraded(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README, Upgrading: a new version upgrades the schema on start, after copying the
    database as it was beside it (the way back to the version that made it)."""
    import sqlite3

    from alembic import command
    from alembic.config import Config

    from digest.revisions import MIGRATIONS, head_revision

    path = workdir / "digest.db"
    old = Database(f"sqlite:///{path}", migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    previous = f"{int(head_revision()) - 1:04d}"
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, previous)
    old.set_meta("kept", "yes")
    old.dispose()

    Database(f"sqlite:///{path}").dispose()  # the new version starts
    copy = workdir / f"digest.db.before-{head_revision()}"
    assert copy.stat().st_mode & 0o777 == 0o600
    copied = sqlite3.connect(copy)
    assert copied.execute("SELECT version_num FROM alembic_version").fetchone() == (previous,)
    assert copied.execute("SELECT value FROM meta WHERE key = 'kept'").fetchone() == ("yes",)
    copied.close()
    assert f"upgrading the schema of {path} from {previous} to {head_revision()}" in caplog.text
    copy.unlink()
    Database(f"sqlite:///{path}").dispose()  # at head: nothing copied
    assert not copy.exists()
    Database(f"sqlite:///{workdir / 'new.db'}").dispose()  # a new database: nothing to copy
    assert sorted(p.name for p in workdir.iterdir()) == ["digest.db", "new.db"]


def test_a_database_that_fails_is_a_storage_error_a_bug_stays_a_bug(db: Database) -> None:
    """Only what the database (or the data) does becomes the one-line StorageError; bad SQL
    and a misused API propagate as the bugs they are, not as "database error" one-liners."""
    from sqlalchemy import text
    from sqlalchemy.exc import (
        InvalidRequestError,
        OperationalError,
        ProgrammingError,
        StatementError,
    )

    from digest.errors import StorageError
    from digest.models import Meta

    with pytest.raises(StatementError) as caught, db.session() as s:  # a bind left unset
        s.execute(text("SELECT :missing"))
    assert isinstance(caught.value.orig, InvalidRequestError)
    with pytest.raises(InvalidRequestError), db.session() as s:  # not a mapped object
        s.add(object())
    # SQLite's driver refuses a wrong count of bindings; PostgreSQL, bad SQL: ProgrammingError.
    bad = "SELECT ?" if db.is_sqlite else "SELECT FROM WHERE"
    args = (1, 2) if db.is_sqlite else ()
    with pytest.raises(ProgrammingError), db.session() as s:
        s.connection().exec_driver_sql(bad, args)
    # The database failing: the one line, its cause kept.
    busy = OperationalError("UPDATE meta", {}, Exception("database is locked"))
    with pytest.raises(StorageError, match="database is locked") as wrapped, db.session():
        raise busy
    assert wrapped.value.__cause__ is busy
    # A constraint (a race: another process inserted the same key) is the database's answer.
    db.set_meta("k", "v")
    with pytest.raises(StorageError, match="database error while talking"), db.session() as s:
        s.add(Meta(key="k", value="again"))
        s.flush()


def test_begin_is_a_core_transaction_wrapped_like_a_session(db: Database) -> None:
    """Database.begin (the poll's way in, no ORM): committed on success, rolled back on an
    error; the database's refusals are StorageErrors, bad SQL stays the bug it is."""
    from sqlalchemy import insert, update
    from sqlalchemy.exc import ProgrammingError

    from digest.errors import StorageError
    from digest.storage import utcnow
    from digest.tables import META

    assert db.get_meta("k") is None
    db.set_meta("k", "v")  # no row yet: inserted
    db.set_meta("k", "w")  # updated
    assert db.get_meta("k") == "w"
    with pytest.raises(KeyError), db.begin() as conn:
        conn.execute(update(META).where(META.c.key == "k").values(value="lost"))
        raise KeyError("a bug half-way")
    assert db.get_meta("k") == "w"
    again = insert(META).values(key="k", value="again", updated_at=utcnow())
    with pytest.raises(StorageError, match="database error while talking"), db.begin() as conn:
        conn.execute(again)  # the key taken (a race lost): the database's answer
    bad = "SELECT ?" if db.is_sqlite else "SELECT FROM WHERE"
    args = (1, 2) if db.is_sqlite else ()
    with pytest.raises(ProgrammingError), db.begin() as conn:
        conn.exec_driver_sql(bad, args)
    assert db.meta_once("k", lambda: "made") == "w"
    assert db.meta_once("new", lambda: "made") == "made"
