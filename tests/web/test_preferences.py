"""A reader's preferences page: sections, unsubscribe, subscribe again, each change kept with
its time; CSRF tokens; bad links. And the outbox that a flood cannot fill past its size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from digest.delivery.subscribers import add_subscriber, unsubscribe
from digest.delivery.tokens import PREFERENCES, make_token
from digest.storage import Database
from digest.web import make_app
from digest.web.outbox import MailJob, Outbox
from tests.web.helpers import KEY, csrf_of, events, row, settings_for


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(make_app(db, settings_for(None))) as c:
        yield c


def url_for(db: Database, email: str) -> str:
    subscriber = row(db, email)
    assert subscriber is not None
    return f"/preferences/{make_token(KEY, subscriber.id, email, PREFERENCES)}"


def test_switch_sections_unsubscribe_and_come_back(db: Database, client: TestClient) -> None:
    add_subscriber(db, "ada@example.com")
    url = url_for(db, "ada@example.com")
    page = client.get(url)
    assert page.status_code == 200
    assert "all sections" in page.text and page.text.count("checked") == 2
    assert page.headers["cache-control"] == "no-store"
    csrf = csrf_of(page.text)
    saved = client.post(url, data={"csrf": csrf, "action": "save", "sections": ["systems"]})
    assert "Saved: you get Systems only." in saved.text
    subscriber = row(db, "ada@example.com")
    assert subscriber is not None and subscriber.sections == "systems"
    gone = client.post(url, data={"csrf": csrf_of(saved.text), "action": "unsubscribe"})
    assert "You&#39;re unsubscribed" in gone.text and "Subscribe again" in gone.text
    # Off the list, one form: the sections ticked are what "Subscribe again" subscribes to.
    assert "Save sections" not in gone.text and gone.text.count("<form") == 1
    assert 'value="resubscribe"' in gone.text and 'value="systems" checked' in gone.text
    subscriber = row(db, "ada@example.com")
    assert subscriber is not None and subscriber.status == "unsubscribed"
    csrf = csrf_of(gone.text)
    none = client.post(url, data={"csrf": csrf, "action": "resubscribe"})
    assert none.status_code == 400 and "Choose at least one section" in none.text
    back = client.post(url, data={"csrf": csrf, "action": "resubscribe", "sections": ["ml"]})
    assert "Welcome back: you get Machine Learning again." in back.text
    subscriber = row(db, "ada@example.com")
    assert subscriber is not None and (subscriber.status, subscriber.sections) == ("active", "ml")
    assert events(db, "ada@example.com") == ["added", "sections", "unsubscribed", "resubscribed"]


def test_changes_need_the_pages_token(db: Database, client: TestClient) -> None:
    add_subscriber(db, "ada@example.com")
    add_subscriber(db, "bob@example.com")
    url = url_for(db, "ada@example.com")
    bobs_csrf = csrf_of(client.get(url_for(db, "bob@example.com")).text)
    for csrf in ("", "1.AAAAAAAAAAAAAAAAAAAAAA", bobs_csrf):
        r = client.post(url, data={"csrf": csrf, "action": "unsubscribe"})
        assert r.status_code == 400 and "make your change again on this page" in r.text
    none = client.post(url, data={"csrf": csrf_of(client.get(url).text), "action": "save"})
    assert none.status_code == 400 and "Choose at least one section" in none.text
    subscriber = row(db, "ada@example.com")
    assert subscriber is not None and (subscriber.status, subscriber.sections) == ("active", None)


def test_bad_preferences_links(db: Database, client: TestClient) -> None:
    add_subscriber(db, "ada@example.com")
    add_subscriber(db, "bob@example.com")
    ada, bob = row(db, "ada@example.com"), row(db, "bob@example.com")
    assert ada is not None and bob is not None
    good = url_for(db, "ada@example.com").rsplit("/", 1)[1]
    for token in (
        make_token(KEY, ada.id, ada.email),  # the unsubscribe token: another purpose
        f"{bob.id}.{good.split('.')[1]}",  # ada's MAC on bob's id
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        "nonsense",
    ):
        for method in ("GET", "POST"):
            r = client.request(method, f"/preferences/{token}", data={"action": "unsubscribe"})
            assert r.status_code == 400 and "This preferences link isn't valid" in r.text
    assert {r.status for r in (row(db, "ada@example.com"), row(db, "bob@example.com")) if r} == {
        "active"
    }


def test_the_one_click_unsubscribe_is_kept_in_the_history_too(db: Database) -> None:
    info, _ = add_subscriber(db, "ada@example.com")
    assert unsubscribe(db, info.id, ip="192.0.2.7")
    assert events(db, "ada@example.com") == ["added", "unsubscribed"]


def test_a_full_outbox_turns_emails_away_at_once(db: Database) -> None:
    outbox = Outbox(db, settings_for(None).replace(smtp={"host": "127.0.0.1"}), KEY, size=2)
    outbox._ensure_worker = lambda: None  # type: ignore[method-assign]  # nothing drains
    job = MailJob(1, "confirm_sent")
    assert [outbox.offer(job) for _ in range(4)] == [True, True, False, False]
    assert outbox.stats()["dropped"] == 2
