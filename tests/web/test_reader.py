"""The reader's path, page by page (issue 24; the browser test walks it whole): the reminder's
words for an active reader, the welcome email, the way back from a one-click unsubscribe,
the sign-up page's blogs, the archive's dates and picks, when issues come in words."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from digest.delivery.subscribers import add_subscriber, find_subscriber, unsubscribe
from digest.delivery.tokens import make_token
from digest.issue.plan import plan_issue, record_issue
from digest.issue.sendtimes import when_issues_come
from digest.storage import Database
from digest.web import make_app
from tests.issue_helpers import SAT, add_feed, add_post
from tests.servers import SMTPSink
from tests.web.helpers import KEY, csrf_of, link_in, parsed, settings_for, settled, text_of

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def app(sqlite_url: str, smtp: SMTPSink) -> Iterator[Starlette]:
    db = Database(sqlite_url)
    app = make_app(db, settings_for(smtp, welcome=True).replace(
        newsletter={"secret_key": KEY, "base_url": "https://news.example.org",
                    "bounce_address": "bounces@news.example.org"},
    ))  # fmt: skip
    yield app
    app.state.site.close()
    db.dispose()


def sign_up(client: TestClient, email: str) -> Any:
    csrf = csrf_of(client.get("/subscribe").text)
    return client.post("/subscribe", data={"csrf": csrf, "email": email, "sections": ["ml"]})


def test_the_reminder_to_an_active_reader_says_nothing_changes(
    app: Starlette, smtp: SMTPSink
) -> None:
    add_subscriber(app.state.site.db, "ada@example.com")
    with TestClient(app) as client:
        sign_up(client, "ada@example.com")
        settled(client)
    text = " ".join(text_of(smtp.raw[0]).split())
    assert "If it wasn't you, there is nothing to do: you keep getting Weekend Reading" in text
    assert "won't hear from us again" not in text


def test_the_welcome_goes_through_the_outbox_with_verp(app: Starlette, smtp: SMTPSink) -> None:
    with TestClient(app) as client:
        sign_up(client, "ada@example.com")
        settled(client)
        path = link_in(smtp.raw[0], "confirm")
        done = client.post(path, data={"csrf": csrf_of(client.get(path).text)})
        assert "Your first issue comes on Saturday" in done.text
        settled(client)
    ada = find_subscriber(app.state.site.db, "ada@example.com")
    (envelope, raw) = smtp.handler.messages[1]
    welcome = parsed(raw)
    assert welcome["Subject"] == "Welcome to Weekend Reading"
    assert envelope.mail_from.startswith(f"bounces+0.{ada.id}.")  # VERP, as every mail
    unsubscribe_url = f"https://news.example.org/unsubscribe/{make_token(KEY, ada.id, ada.email)}"
    assert str(welcome["List-Unsubscribe"]).strip() == f"<{unsubscribe_url}>"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "There is no issue yet" in text_of(raw)


def test_no_welcome_when_turned_off(sqlite_url: str, smtp: SMTPSink) -> None:
    db = Database(sqlite_url)
    app = make_app(db, settings_for(smtp, welcome=False))
    with TestClient(app) as client:
        sign_up(client, "ada@example.com")
        settled(client)
        path = link_in(smtp.raw[0], "confirm")
        client.post(path, data={"csrf": csrf_of(client.get(path).text)})
        settled(client)
    assert [m["Subject"] for m in smtp.messages] == ["Confirm your subscription to Weekend Reading"]
    app.state.site.close()
    db.dispose()


def test_the_one_click_page_offers_the_way_back(app: Starlette) -> None:
    db: Database = app.state.site.db
    info, _ = add_subscriber(db, "ada@example.com", sections="ml")
    stay, _ = add_subscriber(db, "bob@example.com")
    url = f"/unsubscribe/{make_token(KEY, info.id, info.email)}"
    with TestClient(app) as client:
        gone = client.post(url, content=b"List-Unsubscribe=One-Click", headers=FORM)
        assert gone.status_code == 200 and find_subscriber(db, info.email).status == "unsubscribed"
        assert "Subscribe again" in gone.text and "Only Systems" in gone.text
        assert 'value="ml" checked' in gone.text and 'value="systems">' in gone.text
        csrf = csrf_of(gone.text)
        # A stale form, no section, another site: refused, nothing changes.
        for data, headers, status in (
            ({"action": "resubscribe", "csrf": "x", "sections": "ml"}, {}, 400),
            ({"action": "resubscribe", "csrf": csrf}, {}, 400),
            ({"action": "resubscribe", "csrf": csrf, "sections": "ml"},
             {"Sec-Fetch-Site": "cross-site"}, 403),
        ):  # fmt: skip
            assert client.post(url, data=data, headers=headers).status_code == status
            assert find_subscriber(db, info.email).status == "unsubscribed"
        back = client.post(url, data={"action": "resubscribe", "csrf": csrf, "sections": "systems"})
        assert "You're subscribed again" in back.text
        assert "Your next issue comes on" in back.text
        # Our own form's action never unsubscribes anyone, whatever its token.
        bobs = f"/unsubscribe/{make_token(KEY, stay.id, stay.email)}"
        assert client.post(bobs, data={"action": "resubscribe", "csrf": "x"}).status_code == 400
    ada = find_subscriber(db, info.email)
    assert (ada.status, ada.sections) == ("active", ("systems",))
    assert find_subscriber(db, stay.email).status == "active"


def test_already_unsubscribed_the_link_offers_the_way_back_too(app: Starlette) -> None:
    db: Database = app.state.site.db
    info, _ = add_subscriber(db, "ada@example.com")
    unsubscribe(db, info.id)
    with TestClient(app) as client:
        page = client.get(f"/unsubscribe/{make_token(KEY, info.id, info.email)}")
    assert "already unsubscribed" in page.text and "Subscribe again" in page.text


def test_the_sign_up_page_lists_the_blogs_by_section(
    sqlite_url: str, workdir: Path, smtp: SMTPSink
) -> None:
    (workdir / "feeds.opml").write_text(
        '<opml version="2.0"><body><outline text="Systems">'
        '<outline xmlUrl="https://b.example/feed" text="Page Cache" htmlUrl="https://b.example/"/>'
        '</outline><outline text="ML">'
        '<outline xmlUrl="https://a.example/feed" text="Deep Notes" htmlUrl="https://a.example/"/>'
        '<outline xmlUrl="https://a.example/other" text="Deep Notes 2" htmlUrl="https://a.example/"/>'
        "</outline></body></opml>"
    )
    db = Database(sqlite_url)
    app = make_app(db, settings_for(smtp))
    with TestClient(app) as client:
        page = client.get("/subscribe").text
        (workdir / "feeds.opml").write_text("not xml")
        broken = client.get("/subscribe")
    assert page.index("Machine Learning (1)") < page.index("Systems (1)")  # one entry a site
    assert '<a href="https://a.example/">Deep Notes</a>' in page
    assert "A weekly email with the week&#39;s posts" in page
    assert broken.status_code == 200 and "The blogs" not in broken.text
    app.state.site.close()
    db.dispose()


def test_the_archive_says_the_dates_and_picks_of_each_issue(app: Starlette) -> None:
    db: Database = app.state.site.db
    settings = app.state.site.settings
    for k in range(8):
        feed = add_feed(db, f"Blog {k}", "ml" if k % 2 else "systems")
        add_post(db, feed, f"Post {k}", date=SAT - timedelta(days=1 + k % 5), words=300 + 200 * k)
    issue = record_issue(db, settings, plan_issue(db, settings, SAT))
    assert issue is not None and len(issue.pick_titles) == 2
    with TestClient(app) as client:
        page = client.get("/").text
    assert "#1 · 3–10 January 2026" in page and "8 posts" in page
    assert f"Picks: {issue.pick_titles[0]}; {issue.pick_titles[1]}" in page
    assert "A weekly email with the week&#39;s posts" in page and "every Saturday at 8:00" in page


def test_old_issues_get_their_picks_from_their_text() -> None:
    from importlib import import_module

    picks_said = import_module("digest.migrations.versions.0008_web").picks_said
    text = ("WEEKEND READING #3\n3–10 January 2026 · 8 posts from 8 blogs\nIn this issue: 4 "
            "Machine Learning posts, 4\nSystems posts. Picks: Raft, again; Caches and\nqueues\n\n"
            "== THE WEEK'S PICKS")  # fmt: skip
    assert picks_said(text) == ["Raft, again", "Caches and queues"]
    assert picks_said("WEEKEND READING #1\nIn this issue: 2 Systems posts.\n\n") == []


@pytest.mark.parametrize(
    ("send_at", "zone", "schedule", "first"),
    [
        ("saturday 08:00", "UTC", "every Saturday at 8:00 (UTC); the next one on Saturday "
         "15 August", "on Saturday 15 August at 8:00 (UTC), and then every Saturday"),
        ("friday 17:30", "Europe/Berlin", "every Friday at 17:30 (Berlin time); the next one "
         "on Friday 14 August", "on Friday 14 August at 17:30 (Berlin time), and then every "
         "Friday"),
        ("cron: 30 17 * * 5", "America/New_York", "next on Friday 14 August at 17:30 (New York "
         "time)", "on Friday 14 August at 17:30 (New York time)"),
    ],
)  # fmt: skip
def test_when_issues_come_in_the_readers_words(
    send_at: str, zone: str, schedule: str, first: str
) -> None:
    words = when_issues_come(send_at, zone, datetime(2026, 8, 12, 9, tzinfo=UTC))
    assert (words.schedule, words.first) == (schedule, first)
