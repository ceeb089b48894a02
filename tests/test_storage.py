from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from digest.models import Base
from digest.storage import Database


def test_migrations_match_models(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    db.migrate()  # idempotent
    db.dispose()


def test_secret_key_generated_once(db_url: str) -> None:
    db = Database(db_url)
    key = db.secret_key()
    assert len(key) == 64
    assert Database(db_url).secret_key() == key
    assert db.secret_key("configured") == "configured"


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_revision_ids_are_the_file_prefixes() -> None:
    # Database.migrate skips Alembic when the stored revision is head_revision().
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from digest.storage import MIGRATIONS, head_revision

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    for script in scripts.walk_revisions():
        assert script.path is not None
        # The number alone, or (migrations added by several branches at once) the file's stem.
        name = Path(script.path).name
        assert name.startswith(script.revision + "_") or name == script.revision + ".py"
    assert scripts.get_current_head() == head_revision()


def test_an_older_sqlite_schema_is_copied_before_it_is_upgraded(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README, Upgrading: a new version upgrades the schema on start, after copying the
    database as it was beside it (the way back to the version that made it)."""
    import sqlite3

    from alembic import command
    from alembic.config import Config

    from digest.storage import MIGRATIONS, head_revision

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
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (previous,)
    assert conn.execute("SELECT value FROM meta WHERE key = 'kept'").fetchone() == ("yes",)
    conn.close()
    assert f"upgrading the schema of {path} from {previous} to {head_revision()}" in caplog.text
    copy.unlink()
    Database(f"sqlite:///{path}").dispose()  # at head: nothing copied
    assert not copy.exists()
    Database(f"sqlite:///{workdir / 'new.db'}").dispose()  # a new database: nothing to copy
    assert sorted(p.name for p in workdir.iterdir()) == ["digest.db", "new.db"]
