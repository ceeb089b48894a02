"""Commands import what they use when they use it (issue 22: start fast).

Which heavy modules a command loads, checked in a real process after it ran: a guard that
costs no timing (a timed test would pass or fail with the machine's load). Measured figures
are in bench/README.md and the daemon report; `digest poll` with nothing to do took 0.50 s
when it loaded Alembic, lxml and email's policy machinery it did not need."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from digest.ingest.tally import last_poll
from digest.storage import Database
from tests.conftest import run_digest, run_python
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Request, Response

# Run a command in process, then list the modules it loaded (on stderr, last line).
HARNESS = """
import json, sys
from digest.cli import cli
try:
    cli(sys.argv[1:], prog_name="digest")
except SystemExit as e:
    code = e.code
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""
# Never needed to poll: migrations (Alembic, Mako), rendering (premailer, cssutils, Jinja2),
# the OPML parser for an unchanged list (lxml), feedparser (parser processes load it), the
# daemon's scheduler, the web stack, the progress bar without a terminal, DKIM, the ORM (the
# poll uses Core tables); and with no feed to fetch, no HTTP client and no parser processes.
NOT_FOR_POLL = (
    "sqlalchemy.orm",
    "digest.models",
    "httpx",
    "h11",
    "multiprocessing",
    "alembic",
    "mako",
    "premailer",
    "cssutils",
    "jinja2",
    "lxml",
    "feedparser",
    "apscheduler",
    "starlette",
    "uvicorn",
    "tqdm",
    "dkim",
    "email.policy",
)


def loaded(args: list[str], env: dict[str, str], cwd: Path) -> set[str]:
    return run_loaded(args, env, cwd)[0]


def run_loaded(
    args: list[str], env: dict[str, str], cwd: Path
) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run a command in a process; the modules it loaded, and the process."""
    done = run_python(HARNESS, args, env, cwd)
    return set(json.loads(done.stderr.strip().splitlines()[-1])), done


def test_a_poll_with_nothing_to_do_loads_no_database_layer(workdir: Path, sqlite_url: str) -> None:
    opml = write_opml(workdir / "feeds.opml", [])
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_OPML": str(opml)}
    first = loaded(["poll", "--json"], env, workdir)  # creates the database, syncs the list
    assert "alembic" in first and "lxml" in first
    idle = loaded(["poll", "--json"], env, workdir)
    assert "digest.ingest.idle" in idle and "digest.ingest.poll" not in idle
    assert sorted(m for m in idle if m.split(".")[0] == "sqlalchemy") == []
    assert sorted(m for m in NOT_FOR_POLL if m in idle) == []

    # Touched, not changed: the whole poll runs, and still needs no more than a stat and a hash.
    os.utime(opml)
    modules = loaded(["poll", "--json"], env, workdir)
    assert "digest.ingest.poll" in modules  # it did poll
    assert sorted(m for m in NOT_FOR_POLL if m in modules) == []


def test_feeds_all_gone_answered_without_the_database_layer(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    http.route("/gone.xml", Response(410))
    http.route("/also-gone.xml", Response(410))
    opml = write_opml(
        workdir / "feeds.opml",
        [("ML", "Gone", http.url("/gone.xml")), ("Systems", "Also", http.url("/also-gone.xml"))],
    )
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_OPML": str(opml)}
    first = run_digest(["poll", "--json"], env, workdir)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["feeds"] == 2  # fetched: both answer 410
    before = _last_poll_at(sqlite_url)

    modules, again = run_loaded(["poll", "--json"], env, workdir)
    assert "digest.ingest.idle" in modules and "sqlalchemy" not in modules
    summary = json.loads(again.stdout)
    assert (summary["feeds"], summary["skipped"], summary["gone"]) == (0, 0, 2)
    assert len(http.hits("/gone.xml")) == 1  # a 410 is never asked again
    text = run_digest(["poll"], env, workdir).stdout  # in words, as the whole poll says it
    assert "2 gone feeds skipped (HTTP 410): `digest feeds retry URL` polls them again" in text
    assert _last_poll_at(sqlite_url) > before  # its record kept, as /healthz reads it


def _last_poll_at(url: str) -> str:
    db = Database(url)
    try:
        record = last_poll(db)
    finally:
        db.dispose()
    assert record is not None
    return str(record["at"])


def test_a_poll_of_unchanged_feeds_loads_no_orm(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    """The poll works with Core tables (digest.tables): the ORM (sqlalchemy.orm and the
    mapped classes of digest.models) is for the commands that handle objects."""

    def conditional(req: Request) -> Response:
        if req.headers.get("if-none-match") == '"1"':
            return Response(304, headers={"ETag": '"1"'})
        return Response(200, rss(3, site="https://etag.example"), {"ETag": '"1"'})

    http.route("/etag.xml", conditional)
    http.route("/same.xml", Response(200, rss(2, site="https://same.example")))
    feeds = [("Tech", "ETag", http.url("/etag.xml")), ("Tech", "Same", http.url("/same.xml"))]
    write_opml(workdir / "feeds.opml", feeds)
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml")}
    _, first = run_loaded(["poll", "--json"], env, workdir)
    assert json.loads(first.stdout)["new_posts"] == 5
    modules, second = run_loaded(["poll", "--json"], env, workdir)
    summary = json.loads(second.stdout)
    # A 304, and the same body again (its hash as stored): both count as not modified.
    assert (summary["feeds"], summary["not_modified"], summary["new_posts"]) == (2, 2, 0)
    assert (summary["updated_posts"], summary["errors"]) == (0, 0)
    assert len(http.hits("/etag.xml")) == len(http.hits("/same.xml")) == 2
    assert "digest.tables" in modules
    orm = [m for m in modules if m.startswith("sqlalchemy.orm") or m == "digest.models"]
    assert sorted(orm) == []


def test_config_loads_no_database_layer(workdir: Path) -> None:
    modules = loaded(["config"], {}, workdir)
    assert "digest.config" in modules
    assert sorted(m for m in modules if m.split(".")[0] in ("sqlalchemy", "httpx")) == []
