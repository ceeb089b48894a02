from pathlib import Path

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
