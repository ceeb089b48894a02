"""The house: imports point one way, every subpackage says what it owns, no module sprawls.

Layers, top to bottom. A module may import its own unit (its subpackage, or itself) and any
unit of a lower layer; an import of a unit in its own layer ("across") or a higher one ("up")
fails, lazy imports inside functions included.

    __main__, cli            the command line: wires everything, the web app included
    web                      the web endpoint (the daemon runs it when the CLI hands it over)
    daemon                   the long-running service and what `digest status` reports
    bounces                  hearing back from inboxes: reads mailboxes and webhooks' reports,
                             applies them to subscribers (above delivery: VERP tags, the
                             delivery log; below the daemon and web, which run it)
    delivery, feedlist       built on the layer below: delivery sends recorded issues,
                             feedlist discovers feeds over ingest's HTTP
    issue, ingest, backup,   the weekly issue; polling; copies of a SQLite database; a whole
    transfer                 database into another (SQLite to PostgreSQL and back)
    locks                    one daemon, one sender, one poller per database
    storage, migrations      the database
    models                   the schema's ORM classes (mapped onto the tables)
    tables                   the schema, as Core tables (all the poll uses)
    columns, text, urls,     column widths; plain text; URLs; settings read from TOML and
    configfile, patterns     the environment, and shown; feed rules' regular expressions (RE2)
    types, config            records and statuses; settings, each declared once
    errors, settingvalues,   the error tree; how setting values are read from text;
    processes, words,        whether a process runs; counts and times as people read them;
    revisions, metakeys,     the migrations' revisions, read from their files; the meta rows'
    startup, lockholder,     names; start-up without collections; a lock row's holder (no
    digest                   SQLAlchemy); the package itself (its version)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "digest"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("digest.__main__",),
    ("digest.cli",),
    ("digest.web",),
    ("digest.daemon",),
    ("digest.bounces",),
    ("digest.delivery", "digest.feedlist"),
    ("digest.issue", "digest.ingest", "digest.backup", "digest.transfer"),
    ("digest.locks",),
    ("digest.storage", "digest.migrations"),
    ("digest.models",),
    ("digest.tables",),
    ("digest.columns", "digest.text", "digest.urls", "digest.configfile", "digest.patterns"),
    ("digest.types", "digest.config"),
    (
        "digest.errors",
        "digest.settingvalues",
        "digest.processes",
        "digest.words",
        "digest.revisions",
        "digest.metakeys",
        "digest.startup",
        "digest.lockholder",
        "digest",
    ),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# A module this long does more than one thing: split it (the house rule says ~400 lines).
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def unit_of(module: str) -> str | None:
    """The declared unit a module belongs to: the longest declared prefix (the package
    ``digest`` itself only by its own name)."""
    best = None
    for unit in RANK:
        inside = module == unit or (unit != "digest" and module.startswith(unit + "."))
        if inside and (best is None or len(unit) > len(best)):
            best = unit
    return best


def imported_modules(module: str, source: str) -> list[tuple[int, str]]:
    """(line, module) for every digest module that ``source`` imports, anywhere in it."""
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node, is_package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else base))
    return [(line, name) for line, name in found if name.split(".")[0] == "digest"]


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def violations(module: str, source: str) -> list[str]:
    """Each import of ``source`` (the text of ``module``) that points up or across."""
    here = unit_of(module)
    assert here is not None, f"{module} is in no layer: add it to LAYERS"
    found = []
    for line, target in imported_modules(module, source):
        there = unit_of(target)
        if there is None or there == here:
            continue
        if RANK[there] <= RANK[here]:
            way = "across" if RANK[there] == RANK[here] else "up"
            found.append(f"{module}:{line} imports {target} ({way}: {here} -> {there})")
    return found


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in MODULES if unit_of(m) is None] == []


def test_imports_point_down() -> None:
    found = [v for m, path in MODULES.items() for v in violations(m, path.read_text())]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "digest.ingest.poll",
            "from digest.daemon.service import Daemon",
            "digest.ingest.poll:1 imports digest.daemon.service (up: digest.ingest -> "
            "digest.daemon)",
        ),
        (
            "digest.issue.plan",
            "def f():\n    from digest.ingest import policy",
            "digest.issue.plan:2 imports digest.ingest.policy (across: digest.issue -> "
            "digest.ingest)",
        ),
        (
            "digest.models",
            "import digest.storage",
            "digest.models:1 imports digest.storage (up: digest.models -> digest.storage)",
        ),
        (
            "digest.ingest.health",
            "from . import feedstore\nfrom ..daemon import status",
            "digest.ingest.health:2 imports digest.daemon.status (up: digest.ingest -> "
            "digest.daemon)",
        ),
    ],
)
def test_an_upward_or_sideways_import_fails(module: str, source: str, expected: str) -> None:
    assert violations(module, source) == [expected]


def test_imports_down_and_within_a_unit_pass() -> None:
    source = "from digest.ingest import policy\nfrom digest.storage import Database\nimport digest"
    assert violations("digest.ingest.poll", source) == []


def orm_reaches(module: str, source: str) -> list[str]:
    """Each import of the schema or of SQLAlchemy in ``source``: web/ reads and writes through
    the services below it (issue/archive.py, delivery/...), never the ORM itself."""
    found = [f"{module}:{line} imports {name}" for line, name in imported_modules(module, source)
             if unit_of(name) in ("digest.models", "digest.tables")]  # fmt: skip
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [f"{module}:{node.lineno} imports {name}" for name in names
                      if name and name.split(".")[0] == "sqlalchemy"]  # fmt: skip
    return found


def test_the_web_reaches_the_database_only_through_services() -> None:
    web = [m for m in MODULES if unit_of(m) == "digest.web"]
    found = [v for m in web for v in orm_reaches(m, MODULES[m].read_text())]
    assert web and found == [], "\n".join(found)


def test_an_orm_import_in_the_web_fails() -> None:
    source = (
        "from digest.models import Issue\nimport sqlalchemy.orm\nfrom sqlalchemy import select\n"
        "from digest.tables import POSTS"
    )
    assert orm_reaches("digest.web.feed", source) == [
        "digest.web.feed:1 imports digest.models",
        "digest.web.feed:4 imports digest.tables",
        "digest.web.feed:2 imports sqlalchemy.orm",
        "digest.web.feed:3 imports sqlalchemy",
    ]


def test_every_subpackage_says_what_it_owns_in_one_line() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name == "migrations":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "\n" not in doc.strip(), f"{init}: a one-line docstring"


def test_no_module_sprawls() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
