"""The schema's migrations as files: the newest revision and every known one, read without
Alembic or SQLAlchemy (a poll with nothing to do checks the schema before loading either)."""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"""^revision = ["']([^"']+)["']""", re.M)


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
