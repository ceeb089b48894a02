"""Sign-up and double opt-in through the web endpoint (Starlette's client, a real SMTP sink):
the same answer for every address, scanner-safe confirmation, bad links, abuse limits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from digest.config import Settings
from digest.delivery.subscribers import add_subscriber
from digest.delivery.tokens import PREFERENCES, make_confirm_token, make_token
from digest.storage import Database, utcnow
from digest.web import make_app
from tests.conftest import wait_for
from tests.servers import SMTPSink
from tests.web.helpers import (
    KEY,
    csrf_of,
    events,
    link_in,
    page_of,
    parsed,
    row,
    settings_for,
    settled,
    subscribers,
)


@pytest.fixture
def client(db: Database, smtp: SMTPSink) -> Iterator[TestClient]:
    app = make_app(db, settings_for(smtp))
    with TestClient(app, follow_redirects=False) as c:
        yield c
    app.state.site.close()


def sign_up(client: TestClient, email: str, sections: list[str] | None = None, **more: str):  # type: ignore[no-untyped-def]
    csrf = csrf_of(client.get("/subscribe").text)
    chosen = ["ml", "systems"] if sections is None else sections
    data = {"csrf": csrf, "email": email, "sections": chosen, **more}
    return client.post("/subscribe", data=data)


def test_the_form_works_without_javascript(client: TestClient) -> None:
    r = client.get("/subscribe")
    assert r.status_code == 200
    assert '<form method="post" action="/subscribe">' in r.text
    for field in ('name="email"', 'name="name"', 'value="ml"', 'value="systems"', 'name="csrf"'):
        assert field in r.text
    assert 'name="company_site"' in r.text and 'tabindex="-1"' in r.text  # the honeypot
    assert "<script" not in r.text
    assert r.headers["cache-control"] == "no-store"


def test_the_same_answer_for_a_new_a_pending_and_an_active_address(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    add_subscriber(db, "active@example.com")
    assert sign_up(client, "pending@example.com").status_code == 200
    wait_for(lambda: len(smtp.messages) == 1)
    who = ("new", "pending", "active")
    answers = [sign_up(client, f"{w}@example.com") for w in who]
    # The same page but for the address typed, shown so a typo can be spotted.
    bodies = {page_of(r, f"{w}@example.com") for r, w in zip(answers, who, strict=True)}
    assert len(bodies) == 1, "the pages differ"
    headers = [{k: v for k, v in r.headers.items() if k not in ("date", "content-length")}
               for r in answers]  # fmt: skip
    assert headers[0] == headers[1] == headers[2]
    assert b"Check your inbox" in answers[0].content
    assert b"<strong>new@example.com</strong>" in answers[0].content
    wait_for(lambda: len(smtp.messages) == 4)
    subjects = {m["To"]: m["Subject"] for m in smtp.messages[1:]}
    assert subjects == {
        "new@example.com": "Confirm your subscription to Weekend Reading",
        "pending@example.com": "Confirm your subscription to Weekend Reading",
        "active@example.com": "Your Weekend Reading subscription",  # its links, no confirm
    }
    assert subscribers(db) == {
        "active@example.com": "active",
        "pending@example.com": "pending",
        "new@example.com": "pending",
    }


def test_the_confirmation_email_has_an_issues_care(client: TestClient, smtp: SMTPSink) -> None:
    sign_up(client, "ada@example.com", ["systems"], name="Ada Lovelace")
    wait_for(lambda: len(smtp.raw) == 1)
    msg = parsed(smtp.raw[0])
    assert msg["To"] == "Ada Lovelace <ada@example.com>"
    assert msg["Date"] and msg["Message-ID"] and msg["Auto-Submitted"] == "auto-generated"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert 'style="' in html and "/confirm/" in html  # CSS inlined
    assert "Systems" in html and "48 hours" in html
    assert "List-Unsubscribe" not in msg  # on no list until confirmed
    # The spelled-out link breaks anywhere: unbroken, it made the email 481 px wide at 375.
    assert 'style="word-break:break-all"' in html


def test_confirm_get_changes_nothing_and_post_confirms(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    sign_up(client, "ada@example.com", ["systems"])
    wait_for(lambda: len(smtp.raw) == 1)
    path = link_in(smtp.raw[0], "confirm")
    for _ in range(3):  # a mail scanner, a link preview, the reader
        page = client.get(path)
        assert page.status_code == 200 and "<button" in page.text
    subscriber = row(db, "ada@example.com")
    assert subscriber is not None and subscriber.status == "pending"
    assert subscriber.confirmed_at is None
    done = client.post(path, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You're subscribed" in done.text
    subscriber = row(db, "ada@example.com")
    assert subscriber is not None
    assert (subscriber.status, subscriber.sections) == ("active", "systems")
    assert subscriber.confirmed_at is not None and subscriber.confirm_ip == "testclient"
    preferences = make_token(KEY, subscriber.id, "ada@example.com", PREFERENCES)
    assert f'href="/preferences/{preferences}"' in done.text
    assert events(db, "ada@example.com") == ["signed_up", "confirm_sent", "confirmed"]
    again = client.post(path, data={"csrf": csrf_of(page.text)})
    assert "already subscribed" in again.text


def test_a_post_without_the_pages_token_confirms_nothing(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    sign_up(client, "ada@example.com")
    wait_for(lambda: len(smtp.raw) == 1)
    path = link_in(smtp.raw[0], "confirm")
    for data in ({}, {"csrf": "1.AAAAAAAAAAAAAAAAAAAAAA"}):
        r = client.post(path, data=data)
        assert r.status_code == 400 and "Please press Confirm on this page" in r.text
    assert subscribers(db) == {"ada@example.com": "pending"}


def test_expired_other_and_tampered_links_get_a_clear_page_and_change_nothing(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    for who in ("ada", "bob"):
        sign_up(client, f"{who}@example.com")
    wait_for(lambda: len(smtp.raw) == 2)
    ada, bob = row(db, "ada@example.com"), row(db, "bob@example.com")
    assert ada is not None and bob is not None
    good = link_in(smtp.raw[0], "confirm").rsplit("/", 1)[1]
    ada_id, stamp, mac = good.split(".")
    bad = {
        "another subscriber's": f"{bob.id}.{stamp}.{mac}",
        "tampered": f"{ada_id}.{stamp}.{mac[:-1]}{'B' if mac[-1] == 'A' else 'A'}",
        "extended": f"{ada_id}.{int(stamp) + 86400}.{mac}",
        "a preferences token": make_token(KEY, ada.id, ada.email, PREFERENCES),
        "an unsubscribe token": make_token(KEY, ada.id, ada.email),
        "nonsense": "nonsense",
    }
    for what, token in bad.items():
        for method in ("GET", "POST"):
            r = client.request(method, f"/confirm/{token}", data={"csrf": "x"})
            assert r.status_code == 400, what
            assert "This confirmation link isn't valid" in r.text, what
    expired = make_confirm_token(KEY, ada.id, ada.email, utcnow() - timedelta(minutes=1))
    page = client.get(f"/confirm/{expired}")
    assert page.status_code == 410 and "This link has expired" in page.text
    assert "Send me a new link" in page.text
    assert client.post(f"/confirm/{expired}", data={"csrf": "x"}).status_code == 410
    assert subscribers(db) == {"ada@example.com": "pending", "bob@example.com": "pending"}
    # The button on the expired page sends a fresh link, which works.
    r = client.post(f"/confirm/{expired}", data={"csrf": csrf_of(page.text), "action": "resend"})
    assert "Check your inbox" in r.text
    wait_for(lambda: len(smtp.raw) == 3)
    fresh = link_in(smtp.raw[2], "confirm")
    assert client.post(fresh, data={"csrf": csrf_of(client.get(fresh).text)}).status_code == 200
    assert subscribers(db)["ada@example.com"] == "active"


def test_the_honeypot_and_bad_input(db: Database, client: TestClient, smtp: SMTPSink) -> None:
    trap = sign_up(client, "bot@example.com", company_site="https://spam.example")
    assert trap.status_code == 200 and "Check your inbox" in trap.text
    for email, sections, message in (
        ("not an address", ["ml"], "not a valid email address"),
        ("a@example.com\r\nBcc: b@example.com", ["ml"], "line break"),
        ("a@example.com", [], "Choose at least one section"),
    ):
        r = sign_up(client, email, sections)
        assert r.status_code == 400 and message in r.text
        assert '<form method="post"' in r.text  # the form again, to fix
    expired_form = client.post(
        "/subscribe",
        data={"csrf": "1.AAAAAAAAAAAAAAAAAAAAAA", "email": "c@example.com", "sections": "ml"},
    )
    assert expired_form.status_code == 400 and "please send it again" in expired_form.text
    assert subscribers(db) == {}
    assert smtp.messages == []


def test_bodies_that_are_no_form_of_ours_are_refused(db: Database, client: TestClient) -> None:
    csrf = csrf_of(client.get("/subscribe").text)
    big = client.post("/subscribe", data={"csrf": csrf, "email": "a@example.com", "x": "y" * 9000})
    assert big.status_code == 413
    as_json = client.post("/subscribe", json={"email": "a@example.com"})
    assert as_json.status_code == 415
    forged = client.post(
        "/subscribe",
        data={"csrf": csrf, "email": "a@example.com", "sections": "ml"},
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    assert subscribers(db) == {}


def test_at_most_three_emails_a_day_to_one_address(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    answers = {sign_up(client, "ada@example.com").content for _ in range(5)}
    assert len(answers) == 1
    settled(client)
    assert len(smtp.messages) == 3
    assert events(db, "ada@example.com").count("confirm_sent") == 3
    assert events(db, "ada@example.com").count("signed_up") == 5


def test_sign_ups_per_client_per_hour(db: Database, smtp: SMTPSink) -> None:
    app = make_app(db, settings_for(smtp, signup_rate=3))
    with TestClient(app) as client:
        answers = {page_of(sign_up(client, f"r{k}@example.com"), f"r{k}@example.com")
                   for k in range(6)}  # fmt: skip
        settled(client)
    assert len(answers) == 1
    assert len(smtp.messages) == 3
    assert sorted(subscribers(db)) == ["r0@example.com", "r1@example.com", "r2@example.com"]
    app.state.site.close()


def test_sign_up_is_off_on_plain_http_unless_asked(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = Settings().replace(newsletter={"secret_key": KEY})  # http://127.0.0.1:8080
    with TestClient(make_app(db, settings)) as client:
        assert client.get("/subscribe").status_code == 404
        assert client.post("/subscribe", data={"email": "a@example.com"}).status_code == 404
        assert "/subscribe" not in client.get("/").text
    assert "sign-up form off (http://127.0.0.1:8080 is not https" in caplog.text
    with TestClient(make_app(db, settings.replace(web={"signup": True}))) as client:
        assert client.get("/subscribe").status_code == 200
        assert 'href="/subscribe"' in client.get("/").text


def test_without_smtp_the_pages_say_nothing_of_it(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(db, settings_for(None))
    with TestClient(app) as client:
        pages = [client.get("/subscribe").text, sign_up(client, "a@example.com").text]
        settled(client)
    assert "smtp.host is empty: no confirmation email can be sent" in caplog.text
    assert not any("smtp" in page.lower() or "sending" in page.lower() for page in pages)
    assert "Check your inbox" in pages[1]
    assert events(db, "a@example.com") == ["signed_up"]  # no email counted: none queued


def test_a_reader_who_left_signs_up_again_and_is_back_once_confirmed(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    from digest.delivery.subscribers import unsubscribe

    info, _ = add_subscriber(db, "ada@example.com", name="Ada", sections="systems")
    unsubscribe(db, info.id)
    # Anyone may type her address into the form: until she confirms, nothing of hers changes
    # (a stranger renaming her "Mallory" with other sections, for her "subscribe again" to
    # take, was possible before).
    sign_up(client, "ada@example.com", ["ml"], name="Mallory")
    wait_for(lambda: len(smtp.raw) == 1)
    left = row(db, "ada@example.com")
    assert left is not None
    assert (left.status, left.name, left.sections) == ("unsubscribed", "Ada", "systems")
    path = link_in(smtp.raw[0], "confirm")
    client.post(path, data={"csrf": csrf_of(client.get(path).text)})
    back = row(db, "ada@example.com")
    assert back is not None and (back.status, back.unsubscribed_at) == ("active", None)
    assert (back.name, back.sections) == ("Ada", "systems")  # her preferences page changes them


def test_one_who_complained_is_not_mailed_even_to_confirm(
    db: Database, client: TestClient, smtp: SMTPSink
) -> None:
    from sqlalchemy import update

    from digest.models import Subscriber

    add_subscriber(db, "frank@example.com")
    with db.session() as s:
        s.execute(update(Subscriber).values(status="complained"))
    new, frank = sign_up(client, "new@example.com"), sign_up(client, "frank@example.com")
    # The page tells nobody who complained.
    assert page_of(frank, "frank@example.com") == page_of(new, "new@example.com")
    settled(client)
    assert [m["To"] for m in smtp.messages] == ["new@example.com"]
    assert subscribers(db)["frank@example.com"] == "complained"
    assert events(db, "frank@example.com") == ["added", "signed_up"]


@pytest.mark.parametrize(
    ("ttl", "said"),
    [
        (timedelta(days=7), "7 days"),
        (timedelta(hours=48), "48 hours"),
        (timedelta(hours=2, minutes=30), "2.5 hours"),
        (timedelta(seconds=90 * 60), "90 minutes"),
        (timedelta(seconds=5), "5 seconds"),
    ],
)
def test_how_long_a_link_works_reads_well(ttl: timedelta, said: str) -> None:
    from digest.delivery.confirmmail import valid_for

    assert valid_for(ttl) == said
