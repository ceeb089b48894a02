"""The archive at /: 50 issues a page, newest first, the way to older and newer pages; a page
that doesn't exist is a 404; a conditional request is answered from the issues' stamp, the
page and when issues come, so the page changes when the next send time moves on."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from digest.config import Settings
from digest.storage import Database
from digest.web import make_app
from tests.web.helpers import add_issues

SETTINGS = Settings().replace(newsletter={"secret_key": "archive-test-key"})


def listed(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/issues/(\d+)">', html)]


def test_the_archive_pages_by_50_newest_first(sqlite_db: Database) -> None:
    add_issues(sqlite_db, range(1, 121))
    with TestClient(make_app(sqlite_db, SETTINGS)) as client:
        first, second, last = (client.get(p) for p in ("/", "/?page=2", "/?page=3"))
        same = client.get("/?page=1")
    assert listed(first.text) == list(range(120, 70, -1))
    assert listed(second.text) == list(range(70, 20, -1))
    assert listed(last.text) == list(range(20, 0, -1))
    assert '<a href="/?page=2" rel="next">Older issues</a>' in first.text
    assert 'rel="prev"' not in first.text and "(page 1 of 3)" in first.text
    assert '<a href="/" rel="prev">Newer issues</a>' in second.text
    assert '<a href="/?page=3" rel="next">' in second.text
    assert '<a href="/?page=2" rel="prev">' in last.text and 'rel="next"' not in last.text
    assert listed(same.text) == listed(first.text)


@pytest.mark.parametrize("page", ["4", "0", "-1", "x", "1.5", "２", "9999999", ""])
def test_a_page_that_does_not_exist_is_a_404(sqlite_db: Database, page: str) -> None:
    add_issues(sqlite_db, range(1, 121))
    with TestClient(make_app(sqlite_db, SETTINGS)) as client:
        r = client.get("/", params={"page": page})
    assert r.status_code == 404 and "etag" not in r.headers


def test_an_empty_archive_is_one_page(sqlite_db: Database) -> None:
    with TestClient(make_app(sqlite_db, SETTINGS)) as client:
        first, second = client.get("/"), client.get("/?page=2")
    assert first.status_code == 200 and "No issues yet." in first.text
    assert "Older issues" not in first.text and second.status_code == 404


def test_the_archive_changes_when_the_next_send_time_moves_on(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_issues(sqlite_db, range(1, 4))
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday
    monkeypatch.setattr("digest.web.site.utcnow", lambda: now)
    with TestClient(make_app(sqlite_db, SETTINGS)) as client:
        before = client.get("/")
        tag = {"If-None-Match": before.headers["etag"]}
        assert client.get("/", headers=tag).status_code == 304
        now += timedelta(days=1)  # the same next Saturday: the same page
        assert client.get("/", headers=tag).status_code == 304
        now += timedelta(days=3)  # Sunday: next Saturday is another day
        after = client.get("/", headers=tag)
    assert "the next one on Saturday 5 December" in before.text
    assert after.status_code == 200 and "the next one on Saturday 12 December" in after.text
    assert before.headers["cache-control"] == "no-cache"  # a browser asks again each time


def test_an_edited_archive_template_is_served_at_once(sqlite_db: Database, tmp_path: Path) -> None:
    """newsletter.templates: the operator's own look, read again when the file changes."""
    (tmp_path / "web").mkdir()
    template = tmp_path / "web" / "archive.html.j2"
    template.write_text('{% extends "web/base.html.j2" %}{% block body %}one{% endblock %}')
    add_issues(sqlite_db, range(1, 4))
    settings = SETTINGS.replace(newsletter={"templates": tmp_path})
    with TestClient(make_app(sqlite_db, settings)) as client:
        before = client.get("/")
        template.write_text('{% extends "web/base.html.j2" %}{% block body %}two{% endblock %}')
        os.utime(template, ns=(0, 0))  # another mtime, whatever the clock's resolution
        after = client.get("/", headers={"If-None-Match": before.headers["etag"]})
    assert "one" in before.text
    assert after.status_code == 200 and "two" in after.text
