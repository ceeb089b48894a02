"""Issue 24, the operator's surprises: a command that only reads never creates a database,
relative paths in a config file follow the file, and every command that reads the feed list
syncs it first (an edited rule counts without a poll)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from digest.feedlist.listsync import sync_feed_list
from digest.ingest.feedsync import SYNCED_LIST_KEY, sync_feeds
from digest.storage import Database, utcnow
from digest.types import FeedSource
from tests.conftest import PG_URL, run_cli
from tests.servers import FeedServer, Response
from tests.test_cli_rules import END, rss

READING = [
    ["status"],
    ["feeds"],
    ["feeds", "--json"],
    ["preview"],
    ["picks"],
    ["subscribers", "list"],
    ["subscribers", "show", "ann@example.com"],
    ["subscribers", "export", "ann@example.com"],
    ["bounces", "list"],
]


@pytest.mark.parametrize("args", READING, ids=" ".join)
def test_a_command_that_only_reads_never_creates_a_database(
    workdir: Path, sqlite_url: str, args: list[str]
) -> None:
    result = run_cli(args, env={"DIGEST_DATABASE_URL": sqlite_url})
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: no database at {workdir / 'digest.db'} (database.url): nothing to show yet "
        "(`digest poll` or `digest run` creates it)\n"
    )
    assert list(workdir.iterdir()) == []


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL (DIGEST_TEST_DATABASE_URL)")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_empty_postgresql_database_gets_no_tables_from_a_read(
    workdir: Path, db_url: str
) -> None:
    result = run_cli(["status"], env={"DIGEST_DATABASE_URL": db_url})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no digest database in postgresql+psycopg://")
    assert result.stderr.endswith(
        "yet: nothing to show yet (`digest poll` or `digest run` creates it)\n"
    )
    engine = create_engine(db_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_relative_paths_in_a_config_file_are_relative_to_it(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`DIGEST_CONFIG=/srv/digest.toml digest status` from another folder made an empty
    digest.db there and reported 0 feeds."""
    srv = tmp_path_factory.mktemp("srv")
    (srv / "digest.toml").write_text(
        '[database]\nurl = "sqlite:///digest.db"\n[feeds]\nopml = "feeds.opml"\n'
    )
    (srv / "feeds.opml").write_text(
        '<opml version="2.0"><body><outline text="ML">'
        '<outline type="rss" text="A" xmlUrl="https://a.example/feed"/></outline></body></opml>'
    )
    env = {"DIGEST_CONFIG": str(srv / "digest.toml")}
    config = json.loads(run_cli(["config", "--json"], env).stdout)
    assert config["database"]["url"] == f"sqlite:///{srv / 'digest.db'}"
    assert config["feeds"]["opml"] == str(srv / "feeds.opml")
    missing = run_cli(["status"], env)  # none there yet: says so, makes none
    assert missing.exit_code == 1
    assert missing.stderr.startswith(f"Error: no database at {srv / 'digest.db'} (database.url):")
    relative = run_cli(["status"], {"DIGEST_CONFIG": os.path.relpath(srv / "digest.toml")})
    assert relative.stderr == missing.stderr  # a relative --config: the same file
    Database(f"sqlite:///{srv / 'digest.db'}").dispose()
    status = run_cli(["status"], env)
    assert status.exit_code == 0, status.output
    assert "feeds:       1 active, 0 inactive" in status.stdout  # the file's, synced first
    assert list(workdir.iterdir()) == []  # nothing made where the command ran
    # A variable names a path from where digest runs, as before.
    assert run_cli(["config", "--json"], {**env, "DIGEST_FEEDS_OPML": "here.opml"}).stdout.count(
        '"opml": "here.opml"'
    )


def _serve_and_build(workdir: Path, http: FeedServer, skip: str | None) -> dict[str, str]:
    http.route(
        "/links.xml",
        Response(200, rss("https://links.example", [("Weeknotes 12", []), ("An essay", [])])),
    )
    rule = f' — skip: "{skip}"' if skip else ""
    (workdir / "lists").mkdir(exist_ok=True)
    (workdir / "lists" / "ml.md").write_text(
        f"## ML\n- [Links](https://links.example/) — feed: {http.url('/links.xml')}{rule}\n"
    )
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}"}
    assert run_cli(["opml", "build", "--no-discover"], env).exit_code == 0
    return env


def test_a_rule_edit_counts_at_once_without_a_poll(workdir: Path, http: FeedServer) -> None:
    """After `opml build`, `digest feeds` showed no rule and the preview still held the
    skipped post until a poll."""
    env = _serve_and_build(workdir, http, skip=None)
    assert run_cli(["poll"], {**env, "DIGEST_FEEDS_FETCH_PAGES": "false"}).exit_code == 0
    week = ["preview", "--as-of", END.isoformat(), "--format", "text", "-o", "-"]
    assert "Weeknotes 12" in run_cli(week, env).stdout

    _serve_and_build(workdir, http, skip="(?i)weeknotes")  # the rule, and no poll
    requests = len(http.requests)
    [feed] = json.loads(run_cli(["feeds", "--json"], env).stdout)
    assert feed["rules"] == {"skip": "(?i)weeknotes"}
    preview = run_cli(week, env).stdout
    assert "Weeknotes 12" not in preview and "An essay" in preview
    assert len(http.requests) == requests  # no feed was fetched for it


def test_syncing_an_unchanged_feed_list_reads_no_feed(
    workdir: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opml = workdir / "feeds.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline type="rss" text="A" '
        'xmlUrl="https://a.example/feed"/></body></opml>'
    )
    db = Database(sqlite_url)
    first = sync_feed_list(db, opml, utcnow())
    assert first is not None and first.added == 1
    calls: list[object] = []
    monkeypatch.setattr("digest.feedlist.listsync.sync_feeds", lambda *a: calls.append(a))
    again = sync_feed_list(db, opml, utcnow())
    assert again is not None and again.added == 0
    assert calls == []  # the stored hash matched: no parse, no feeds read
    # A poll of another file changes the feeds: the stored hash goes, the next sync runs.
    sync_feeds(db, [FeedSource(url="https://b.example/feed")], utcnow())
    assert db.get_meta(SYNCED_LIST_KEY) is None
    assert sync_feed_list(db, workdir / "missing.opml", utcnow()) is None
    db.dispose()
