"""The archive's Atom feed: finished issues only, the web version as content, no warning in
feedparser, announced on the archive page, polite to pollers; and digest's own `digest poll`
reading it from a real `digest serve`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from digest.config import Settings
from digest.issue.plan import plan_issue, record_issue
from digest.models import Issue
from digest.storage import Database
from digest.types import IssueStatus
from digest.web import make_app
from tests.conftest import run_cli
from tests.issue_helpers import SAT, add_feed, add_post
from tests.poll_helpers import write_opml
from tests.web.helpers import serving

SETTINGS = Settings().replace(newsletter={"secret_key": "feed-test-key"})


def two_weeks(db: Database, settings: Settings = SETTINGS) -> None:
    """Issue 1 sent, issue 2 recorded and still going out."""
    feed = add_feed(db, "Deep Blog", "ml")
    for week, title in ((0, "Attention <again>"), (1, "Sparse experts")):
        end = SAT + timedelta(days=7 * week)
        add_post(db, feed, title, date=end - timedelta(days=2))
        assert record_issue(db, settings, plan_issue(db, settings, end)) is not None
    with db.session() as s:
        s.execute(update(Issue).where(Issue.number == 1).values(status=IssueStatus.SENT))


def test_the_feed_holds_finished_issues_and_parses_cleanly(db: Database) -> None:
    two_weeks(db)
    with TestClient(make_app(db, SETTINGS)) as client:
        r = client.get("/feed.xml")
        archive = client.get("/").text
        again = client.get("/feed.xml", headers={"If-None-Match": r.headers["etag"]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(r.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Weekend Reading"
    [entry] = parsed.entries  # issue 2 is still going out
    assert entry.link == "http://127.0.0.1:8080/issues/1"
    assert entry.title.startswith("Weekend Reading #1")
    html = entry.content[0].value
    assert "Attention &lt;again&gt;" in html and "Sparse experts" not in html
    assert "<style" not in html and "<head" not in html
    assert "unsubscribe.invalid" not in html and "preferences.invalid" not in html
    assert '<link rel="alternate" type="application/atom+xml"' in archive
    assert 'href="/feed.xml"' in archive
    assert again.status_code == 304 and again.content == b""


def test_an_empty_archive_is_a_valid_empty_feed(db: Database) -> None:
    with TestClient(make_app(db, SETTINGS)) as client:
        parsed = feedparser.parse(client.get("/feed.xml").content)
    assert parsed.bozo == 0 and parsed.entries == []


@pytest.mark.slow
def test_digest_poll_reads_the_feed_of_a_real_digest_serve(
    sqlite_url: str, workdir: Path, tmp_path: Path
) -> None:
    two_weeks(Database(sqlite_url))
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_NEWSLETTER_SECRET_KEY": "feed-test-key"}
    with serving(env, workdir) as (base, _process):
        reader = tmp_path / "reader"
        reader.mkdir()
        write_opml(reader / "feeds.opml", [("Newsletters", "Our own", f"{base}/feed.xml")])
        poller = {
            "DIGEST_DATABASE_URL": f"sqlite:///{reader / 'reader.db'}",
            "DIGEST_FEEDS_OPML": str(reader / "feeds.opml"),
        }
        first = run_cli(["poll", "--json"], poller)  # the reader: another digest
        second = run_cli(["poll", "--json"], poller)
        feeds = run_cli(["feeds", "--json"], poller)
    assert first.exit_code == 0, first.output
    log = (workdir / "serve.log").read_text()
    assert f"sign-up form off ({base} is not https; set web.signup = true to open it)" in log
    assert json.loads(first.stdout) == {
        "feeds": 1, "new_posts": 1, "updated_posts": 0, "not_modified": 0, "errors": 0,
        "skipped": 0, "skipped_until": None, "gone": 0,
    }  # fmt: skip
    assert json.loads(second.stdout)["not_modified"] == 1  # the ETag: a 304
    [feed] = json.loads(feeds.stdout)
    assert feed["warning"] is None and feed["error"] is None
    assert feed["posts"] == 1
