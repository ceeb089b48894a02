"""The archive's Atom feed: finished issues only, the web version as content, no warning in
feedparser, announced on the archive page, polite to pollers; and digest's own `digest poll`
reading it from a real `digest serve`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import feedparser
import httpx
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from digest.config import Settings
from digest.delivery.send import send_issue
from digest.issue.plan import plan_issue, record_issue
from digest.models import Issue
from digest.storage import Database
from digest.types import IssueStatus
from digest.web import make_app
from tests.conftest import run_cli
from tests.issue_helpers import SAT, add_feed, add_post
from tests.poll_helpers import write_opml
from tests.web.helpers import add_issues, serving, statements

DAY = timedelta(days=1)
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


def entry_numbers(body: bytes) -> list[int]:
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return [int(e.link.rpartition("/")[2]) for e in parsed.entries]


def test_a_304_costs_one_select_at_5_and_at_150_issues(db: Database) -> None:
    """The key is read before anything is built: a 304 (by tag or by date) and a cached 200
    cost one SELECT (and SQLite's BEGIN) at any history."""
    costs: dict[int, list[int]] = {}
    for upto, new in ((5, range(1, 6)), (150, range(6, 151))):
        add_issues(db, new)
        with TestClient(make_app(db, SETTINGS)) as client:
            costs[upto] = []
            for path in ("/feed.xml", "/"):
                first = client.get(path)
                by_tag = {"If-None-Match": first.headers["etag"]}
                by_date = {"If-Modified-Since": first.headers["last-modified"]}
                for headers, status in ((by_tag, 304), (by_date, 304), ({}, 200)):
                    with statements(db) as seen:
                        r = client.get(path, headers=headers)
                    assert r.status_code == status
                    assert status == 304 or r.content == first.content
                    costs[upto].append(len(seen))
                    assert [q for q in seen if not q.startswith("BEGIN")] == seen[-1:], seen
    assert costs[5] == costs[150]
    with TestClient(make_app(db, SETTINGS)) as client:
        assert entry_numbers(client.get("/feed.xml").content) == list(range(150, 130, -1))


def test_the_feed_carries_the_newest_web_feed_issues_finished_ones(sqlite_db: Database) -> None:
    add_issues(sqlite_db, range(1, 31))
    add_issues(sqlite_db, range(31, 38), status="recorded")  # more going out than the slack
    settings = SETTINGS.replace(web={"feed_issues": 5})
    with TestClient(make_app(sqlite_db, settings)) as client:
        r = client.get("/feed.xml")
    assert entry_numbers(r.content) == [30, 29, 28, 27, 26]
    html = feedparser.parse(r.content).entries[0].content[0].value
    assert "<p>Issue 30</p>" in html and 'href="http://127.0.0.1:8080/"' in html  # no token


def test_a_new_issue_changes_the_feed_and_the_archive_once_it_is_finished(
    sqlite_db: Database,
) -> None:
    db = sqlite_db
    add_issues(db, range(1, 4))
    with TestClient(make_app(db, SETTINGS)) as client:
        feed, archive = client.get("/feed.xml"), client.get("/")
        feed_tag = {"If-None-Match": feed.headers["etag"]}
        feed_date = {"If-Modified-Since": feed.headers["last-modified"]}
        archive_tag = {"If-None-Match": archive.headers["etag"]}
        # Recorded and going out: on the archive at once, in the feed once it has gone out.
        add_post(db, add_feed(db, "Deep Blog", "ml"), "Sparse experts", date=SAT - DAY)
        assert record_issue(db, SETTINGS, plan_issue(db, SETTINGS, SAT)) is not None
        assert client.get("/feed.xml", headers=feed_tag).status_code == 304
        assert client.get("/feed.xml", headers=feed_date).status_code == 304
        listed = client.get("/", headers=archive_tag)
        assert listed.status_code == 200 and "#4 · " in listed.text
        with db.session() as s:
            s.execute(update(Issue).where(Issue.number == 4).values(status=IssueStatus.SENT))
        for headers in (feed_tag, feed_date):
            r = client.get("/feed.xml", headers=headers)
            assert r.status_code == 200 and entry_numbers(r.content) == [4, 3, 2, 1]
            assert r.headers["etag"] != feed.headers["etag"]
        now = {"If-None-Match": r.headers["etag"]}
        assert client.get("/feed.xml", headers=now).status_code == 304


def test_an_older_issue_finishing_late_joins_the_feed(sqlite_db: Database) -> None:
    add_issues(sqlite_db, [1, 2, 4, 5])
    add_issues(sqlite_db, [3], status="recorded")  # sending was off, then on again
    with TestClient(make_app(sqlite_db, SETTINGS)) as client:
        before = client.get("/feed.xml")
        assert entry_numbers(before.content) == [5, 4, 2, 1]
        with sqlite_db.session() as s:
            s.execute(update(Issue).where(Issue.number == 3).values(status=IssueStatus.SENT))
        after = client.get("/feed.xml", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and entry_numbers(after.content) == [5, 4, 3, 2, 1]


def test_a_new_base_url_changes_every_etag(sqlite_db: Database) -> None:
    add_issues(sqlite_db, range(1, 4))
    moved = SETTINGS.replace(newsletter={"base_url": "https://news.example.org"})
    with TestClient(make_app(sqlite_db, SETTINGS)) as client:
        old = {path: client.get(path).headers["etag"] for path in ("/feed.xml", "/")}
    with TestClient(make_app(sqlite_db, moved)) as client:
        again = {path: client.get(path, headers={"If-None-Match": old[path]}) for path in old}
    assert [r.status_code for r in again.values()] == [200, 200]
    assert feedparser.parse(again["/feed.xml"].content).entries[0].link == (
        "https://news.example.org/issues/3"
    )
    assert 'href="/subscribe"' in again["/"].text  # https: the sign-up form is on now


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


@pytest.mark.slow
def test_a_real_digest_serve_answers_304_until_the_next_issue_goes_out(
    sqlite_url: str, workdir: Path
) -> None:
    """By ETag and by date, over HTTP: the feed (web.feed_issues = 2) and the archive say
    "not modified" until `digest send` (sending off: recorded, not mailed) adds an issue."""
    db = Database(sqlite_url)
    add_issues(db, range(1, 4))
    add_post(db, add_feed(db, "Deep Blog", "ml"), "Sparse experts", date=SAT - DAY)
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_NEWSLETTER_SECRET_KEY": "feed-test-key",
           "DIGEST_WEB_FEED_ISSUES": "2"}  # fmt: skip
    with serving(env, workdir) as (base, _process), httpx.Client(base_url=base) as http:
        first = {path: http.get(path) for path in ("/feed.xml", "/")}
        asks = [(path, {"If-None-Match": r.headers["etag"]}) for path, r in first.items()] + [
            (path, {"If-Modified-Since": r.headers["last-modified"]}) for path, r in first.items()
        ]
        before = [http.get(path, headers=headers) for path, headers in asks]
        assert send_issue(db, SETTINGS, as_of=SAT).mode == "off"
        after = [http.get(path, headers=headers) for path, headers in asks]
    assert entry_numbers(first["/feed.xml"].content) == [3, 2]
    assert [(r.status_code, r.content) for r in before] == [(304, b"")] * 4
    assert [r.status_code for r in after] == [200] * 4
    assert entry_numbers(after[0].content) == [4, 3]
    assert "#4 · " in after[1].text and "#4 · " not in first["/"].text
    assert after[0].headers["etag"] != first["/feed.xml"].headers["etag"]
    db.dispose()
