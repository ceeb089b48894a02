"""A feed whose parse kills its parser process, among good feeds, end to end: through
`digest poll` and through the daemon (`digest run`), real processes, real HTTP, SQLite.

The poison body carries conftest's PARSER_KILLER: digest.ingest.worker's test hook then ends
the worker with os._exit, as an out-of-memory kill or a crash in a C extension would. Parsed
in the poll's own process the same body is a valid feed, so a stored post would show that
it was parsed there (issue 23: it never is)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PARSER_KILLER, run_cli, run_digest
from tests.daemon_helpers import Running, last_send_time, yearly
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Response

pytestmark = pytest.mark.slow
GOOD = 9  # above the batch from which a one-shot poll starts parser processes


def serve(http: FeedServer, workdir: Path, db_url: str) -> dict[str, str]:
    feeds = []
    for i in range(GOOD):
        http.route(f"/f{i}.xml", Response(200, rss(3, site=f"https://b{i}.example")))
        feeds.append(("Systems", f"Blog {i}", http.url(f"/f{i}.xml")))
    body = rss(3, site="https://poison.example")
    http.route("/poison.xml", Response(200, body.replace(b"<channel>", _killer() + b"<channel>")))
    feeds.append(("ML", "Poison", http.url("/poison.xml")))
    write_opml(workdir / "feeds.opml", feeds)
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_FEEDS_TIMEOUT": "5s",
        "DIGEST_FEEDS_WORKERS": "2",
    }


def _killer() -> bytes:
    return PARSER_KILLER.encode()


def feeds_by_title(env: dict[str, str]) -> dict[str, Any]:
    listing = run_cli(["feeds", "--json"], env)
    assert listing.exit_code == 0, listing.output
    return {f["title"]: f for f in json.loads(listing.stdout)}


def test_poll_stores_the_good_feeds_and_reports_the_one_that_kills_its_parser(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    env = serve(http, workdir, sqlite_url)
    polled = run_digest(["poll", "--json"], env, workdir)
    assert polled.returncode == 0, polled.stderr
    summary = json.loads(polled.stdout)
    assert (summary["feeds"], summary["new_posts"], summary["errors"]) == (GOOD + 1, 3 * GOOD, 1)
    assert "parser process died" in polled.stderr  # the log's warning names the feed
    feeds = feeds_by_title(env)
    assert feeds["Poison"]["status"] == "error" and feeds["Poison"]["posts"] == 0
    assert feeds["Poison"]["error"] == "parser process died"
    assert all(feeds[f"Blog {i}"]["posts"] == 3 for i in range(GOOD))
    table = run_cli(["feeds", "--errors"], env)
    assert "parser process died" in table.stdout


def test_the_daemon_reports_the_poison_feed_and_keeps_running(
    workdir: Path, sqlite_url: str, http: FeedServer, runs: list[Running]
) -> None:
    env = serve(http, workdir, sqlite_url) | {
        "DIGEST_FEEDS_POLL_INTERVAL": "3s",
        "DIGEST_NEWSLETTER_SEND_AT": yearly(last_send_time()),
        "DIGEST_NEWSLETTER_TIMEZONE": "UTC",
        "DIGEST_WEB_ENABLED": "false",
    }
    daemon = Running(env, workdir, workdir / "run.log")
    runs.append(daemon)
    first = daemon.wait_log(lambda r: r.get("event") == "poll", 60)
    assert (first["feeds"], first["new_posts"], first["errors"]) == (GOOD + 1, 3 * GOOD, 1)
    # It goes on: the next rounds poll the good feeds again with the new parser processes.
    http.route("/f0.xml", Response(200, rss(4, site="https://b0.example")))
    later = daemon.wait_log(lambda r: r.get("event") == "poll" and r["new_posts"] == 1, 60)
    assert later["errors"] == 0
    assert daemon.proc.poll() is None
    feeds = feeds_by_title(env)
    assert feeds["Poison"]["error"] == "parser process died" and feeds["Poison"]["posts"] == 0
    assert feeds["Blog 0"]["posts"] == 4
    code, _took = daemon.terminate()
    assert code == 0, daemon.text()
    assert any("parser process died" in r["message"] for r in daemon.records())
