"""Hostile requests to the web endpoint (issue 23): tokens past the ranges the database and the
calendar hold, nested JSON to a webhook, a trailing slash under a forged Host, a bug's 500,
forged access-log lines; webhooks that would trust too much; Postmark guessed at."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from digest.config import Settings
from digest.delivery.subscribers import add_subscriber
from digest.delivery.tokens import PREFERENCES, make_confirm_token, make_form_token, make_token
from digest.errors import ConfigError
from digest.storage import Database
from digest.web import make_app
from tests.conftest import run_cli
from tests.sns_helpers import TOPIC
from tests.web.helpers import BASE, KEY, settings_for

PAST_9999 = 999_999_999_999  # unix seconds: year 33658
BIG_ID = 2**31  # one past PostgreSQL's integer
PASSWORD = "a-postmark-password-of-32-chars!"


@contextlib.contextmanager
def client_of(url: str) -> Iterator[TestClient]:
    db = Database(url)
    app = make_app(db, settings_for(None))
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as c:
        yield c
    app.state.site.close()
    db.dispose()


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    """The app on SQLite (where the database is not the subject)."""
    with client_of(sqlite_url) as c:
        yield c


def assert_our_page(r: Any, status: int) -> None:
    """Our page, with the headers every page of ours carries."""
    assert r.status_code == status, r.text[:200]
    assert r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_ids_past_the_databases_integers_name_nobody(db_url: str) -> None:
    """On PostgreSQL, asking for id 2^31 was "integer out of range": a 500."""
    paths = (
        f"/unsubscribe/{make_token(KEY, BIG_ID, 'a@example.com')}",
        f"/preferences/{make_token(KEY, BIG_ID, 'a@example.com', PREFERENCES)}",
        f"/confirm/{make_confirm_token(KEY, BIG_ID, 'a@example.com', _stamp(2030))}",
        "/unsubscribe/999999999999999999.AAAAAAAAAAAAAAAAAAAAAA",
    )
    with client_of(db_url) as client:
        for method in ("GET", "POST"):
            for path in paths:
                assert_our_page(client.request(method, path), 400)


def test_stamps_past_year_9999_name_nothing(sqlite_url: str) -> None:
    """datetime can't hold them: a confirm token's and a form token's were a 500."""
    db = Database(sqlite_url)
    info, _ = add_subscriber(db, "ada@example.com")
    with TestClient(make_app(db, settings_for(None)), raise_server_exceptions=False) as client:
        assert_our_page(client.get(f"/confirm/{info.id}.{PAST_9999}.AAAAAAAAAAAAAAAAAAAAAA"), 400)
        preferences = f"/preferences/{make_token(KEY, info.id, info.email, PREFERENCES)}"
        forged = f"{PAST_9999}.AAAAAAAAAAAAAAAAAAAAAA"
        r = client.post(preferences, data={"csrf": forged, "action": "unsubscribe"})
        assert_our_page(r, 400)
        assert "make your change again on this page" in r.text
    db.dispose()


def test_a_bug_answers_our_500_page_with_our_headers(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("digest.web.reading.archive_page", broken)
    r = client.get("/")
    assert_our_page(r, 500)
    assert "Something went wrong" in r.text and "a bug" not in r.text


def test_a_trailing_slash_is_redirected_to_our_own_host(client: TestClient) -> None:
    r = client.get("/subscribe/?x=1", headers={"Host": "evil.example"})
    assert (r.status_code, r.headers["location"]) == (307, f"{BASE}/subscribe?x=1")
    assert client.get("/nowhere/", headers={"Host": "evil.example"}).status_code == 404


def test_the_access_log_escapes_forged_lines_and_terminal_codes(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="digest.web.access")
    client.get("/x%0a127.0.0.1%20GET%20/admin%20200%200.1%20ms")
    client.get("/y%1b%5b2J%1b%5b31mred")
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.web.access"]
    assert lines == [
        "testclient GET /x\\n127.0.0.1 GET /admin 200 0.1 ms 404 " + lines[0].split()[-2] + " ms",
        "testclient GET /y\\x1b[2J\\x1b[31mred 404 " + lines[1].split()[-2] + " ms",
    ]
    assert all("\n" not in line and "\x1b" not in line for line in lines)


def test_nested_json_to_a_webhook_is_a_400(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    settings = settings_for(None).replace(
        webhooks={"ses": True, "ses_topic_arn": TOPIC, "postmark": True,
                  "postmark_password": PASSWORD},
    )  # fmt: skip
    nested = b"[" * 100_000 + b"]" * 100_000
    auth = {"Authorization": "Basic " + base64.b64encode(f"postmark:{PASSWORD}".encode()).decode()}
    app = make_app(db, settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/webhooks/ses", content=nested).status_code == 400
        assert client.post("/webhooks/postmark", content=nested, headers=auth).status_code == 400
        inner = json.dumps({"Type": "Notification", "TopicArn": TOPIC, "Message": "[" * 100_000})
        assert client.post("/webhooks/ses", content=inner).status_code in (400, 403)
    app.state.site.close()
    db.dispose()


def test_webhooks_that_would_trust_too_much_are_refused_at_start(workdir: Path) -> None:
    from digest.web import check_settings

    base = Settings().replace(newsletter={"secret_key": "k"})
    with pytest.raises(ConfigError, match="webhooks.ses needs webhooks.ses_topic_arn"):
        check_settings(base.replace(webhooks={"ses": True}))
    with pytest.raises(ConfigError, match="at least 16 characters .basic auth; it has 1"):
        check_settings(base.replace(webhooks={"postmark": True, "postmark_password": "x"}))
    check_settings(base.replace(webhooks={"ses": True, "ses_topic_arn": TOPIC}))
    # `digest run` says so in one line before it starts anything.
    (workdir / "feeds.opml").write_text('<opml version="2.0"><body/></opml>')
    result = run_cli(["run"], env={"DIGEST_WEBHOOKS_SES": "true"})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: webhooks.ses needs webhooks.ses_topic_arn (the ARN of your SNS topic): without "
        "it, any AWS account's topic could report bounces and complaints"
    ]


def test_postmark_refuses_a_client_after_its_failed_logins(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    from digest.web.webhooks import AUTH_FAILURES

    settings = settings_for(None).replace(
        webhooks={"postmark": True, "postmark_password": PASSWORD}
    )
    app = make_app(db, settings)
    hook = {"RecordType": "Bounce", "ID": 1, "Type": "AutoResponder", "Email": "a@example.com"}
    with (
        TestClient(app, client=("203.0.113.9", 40000)) as guesser,
        TestClient(app, client=("198.51.100.7", 40000)) as postmark,
    ):
        for guess in range(AUTH_FAILURES):
            r = guesser.post("/webhooks/postmark", json=hook, auth=("postmark", f"guess{guess}"))
            assert r.status_code == 401
        # Now refused whatever it sends, the right password included: guessing goes nowhere.
        r = guesser.post("/webhooks/postmark", json=hook, auth=("postmark", PASSWORD))
        assert r.status_code == 429 and r.headers["retry-after"] == "3600"
        # Postmark itself, from its own address, is not held up.
        assert postmark.post(
            "/webhooks/postmark", json=hook, auth=("postmark", PASSWORD)
        ).is_success
    app.state.site.close()
    db.dispose()


def _stamp(year: int) -> Any:
    from datetime import UTC, datetime

    return datetime(year, 1, 1, tzinfo=UTC)


def test_form_tokens_past_9999_are_refused_by_the_check() -> None:
    from datetime import UTC, datetime

    from digest.delivery.tokens import check_form_token

    token = make_form_token(KEY, "subscribe", 0, datetime(9999, 12, 30, tzinfo=UTC))
    assert check_form_token(KEY, token, "subscribe", 0, datetime(2026, 1, 1, tzinfo=UTC))
    assert not check_form_token(KEY, f"{PAST_9999}.{token.split('.')[1]}", "subscribe", 0,
                                datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
