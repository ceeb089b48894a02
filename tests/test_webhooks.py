"""The webhooks: `digest serve` as a real process taking signed SNS messages and Postmark
calls; forged or unauthenticated ones refused, changing nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from digest.bounces import sns
from digest.bounces.events import list_events
from digest.config import Settings
from digest.delivery.subscribers import add_subscriber, list_subscribers
from digest.errors import ConfigError
from digest.storage import Database
from digest.web import make_app
from tests.sns_helpers import TOPIC, Signer, notification, ses_bounce, ses_complaint
from tests.web.helpers import serving

READERS = ("ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com")
POSTMARK = ("postmark", "hook-secret-of-24-chars")


def statuses(db: Database) -> dict[str, str]:
    return {s.email: str(s.status) for s in list_subscribers(db)}


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Database, Signer]]:
    """`digest serve` with both webhooks on; the test certificate kept as SNS's."""
    db, signer = Database(db_url), Signer()
    for email in READERS:
        add_subscriber(db, email)
    signer.trust(db)
    env = {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_NEWSLETTER_SECRET_KEY": "k",
        "DIGEST_WEBHOOKS_SES": "true",
        "DIGEST_WEBHOOKS_SES_TOPIC_ARN": TOPIC,
        "DIGEST_WEBHOOKS_POSTMARK": "true",
        "DIGEST_WEBHOOKS_POSTMARK_PASSWORD": POSTMARK[1],
    }
    try:
        with serving(env, tmp_path) as (base, _):
            yield base, db, signer
    finally:
        db.dispose()


def post(url: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(url, content=json.dumps(body), timeout=10, **kwargs)


@pytest.mark.slow
def test_ses_through_sns_signed_or_refused(served: tuple[str, Database, Signer]) -> None:
    base, db, signer = served
    url = base + "/webhooks/ses"
    untouched = dict.fromkeys(READERS, "active")
    # Forged: signed with another key, a signature altered, a certificate from elsewhere.
    forged = Signer().sign(notification(ses_bounce("ann@example.com")))
    altered = signer.sign(notification(ses_bounce("bob@example.com")))
    altered["Message"] = altered["Message"].replace("bob@", "ann@")
    elsewhere = signer.sign(notification(ses_bounce("ann@example.com"), "m-9"))
    elsewhere["SigningCertURL"] = "https://evil.example/SimpleNotificationService-x.pem"
    for bad in (forged, altered, elsewhere):
        r = post(url, bad)
        assert (r.status_code, r.json()["status"]) == (403, "bad SNS signature")
    other_topic = signer.sign({**notification(ses_bounce("ann@example.com")), "TopicArn": "x"})
    assert post(url, other_topic).status_code == 403
    assert post(url, {"Type": "Nonsense"}).status_code == 400
    assert httpx.post(url, content=b"not json", timeout=10).status_code == 400
    assert statuses(db) == untouched and list_events(db) == []

    # Signed (SignatureVersion 2 and 1): a hard bounce and a complaint.
    bounce = signer.sign(notification(ses_bounce("ann@example.com"), "m-1"), "2")
    r = post(url, bounce)
    assert (r.status_code, r.json()["applied"]) == (200, ["hard: ann@example.com"])
    complaint = signer.sign(notification(ses_complaint("bob@example.com"), "m-2"), "1")
    assert post(url, complaint).status_code == 200
    assert post(url, bounce).status_code == 200  # SNS retries: still one event
    assert statuses(db) == untouched | {
        "ann@example.com": "bounced",
        "bob@example.com": "complained",
    }
    assert sorted((e.email, e.kind, e.source) for e in list_events(db)) == [
        ("ann@example.com", "hard", "ses"), ("bob@example.com", "complaint", "ses"),
    ]  # fmt: skip


@pytest.mark.slow
def test_postmark_with_its_secret_only(served: tuple[str, Database, Signer]) -> None:
    base, db, _signer = served
    url = base + "/webhooks/postmark"
    hard = {"RecordType": "Bounce", "ID": 1, "Type": "HardBounce", "Email": "cy@example.com",
            "Details": "smtp;550 5.1.1 no such user"}  # fmt: skip
    for auth in (None, ("postmark", "wrong"), ("someone", POSTMARK[1])):
        r = post(url, hard, auth=auth)
        assert r.status_code == 401 and "www-authenticate" in r.headers
    assert post(url, hard, headers={"Authorization": "Basic !!!"}).status_code == 401
    assert statuses(db) == dict.fromkeys(READERS, "active") and list_events(db) == []
    assert post(url, hard, auth=POSTMARK).status_code == 200
    complaint = {"RecordType": "SpamComplaint", "ID": 2, "Type": "SpamComplaint",
                 "Email": "dee@example.com"}  # fmt: skip
    assert post(url, complaint, auth=POSTMARK).status_code == 200
    auto = {"RecordType": "Bounce", "ID": 3, "Type": "AutoResponder", "Email": "ann@example.com"}
    assert post(url, auto, auth=POSTMARK).json()["applied"] == []
    assert statuses(db) == {
        "ann@example.com": "active", "bob@example.com": "active",
        "cy@example.com": "bounced", "dee@example.com": "complained",
    }  # fmt: skip


def test_off_by_default_and_postmark_needs_a_password(db: Database) -> None:
    settings = Settings().replace(newsletter={"secret_key": "k"})
    with TestClient(make_app(db, settings)) as client:
        assert client.post("/webhooks/ses", content=b"{}").status_code == 404
        assert client.post("/webhooks/postmark", content=b"{}").status_code == 404
    with pytest.raises(ConfigError, match="webhooks.postmark_password"):
        make_app(db, settings.replace(webhooks={"postmark": True}))


def test_a_subscription_is_confirmed_by_its_own_link(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, fetched = Signer(), []
    signer.trust(db)
    monkeypatch.setattr(sns, "http_get", lambda url: fetched.append(url) or b"<ok/>")
    link = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=t&Token=tok"
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "c-1", "Token": "tok",
               "TopicArn": TOPIC, "Message": "You have chosen to subscribe",
               "SubscribeURL": link, "Timestamp": "2026-01-10T08:00:00.000Z"}  # fmt: skip
    settings = Settings().replace(
        newsletter={"secret_key": "k"}, webhooks={"ses": True, "ses_topic_arn": TOPIC}
    )
    with TestClient(make_app(db, settings)) as client:
        r = client.post("/webhooks/ses", content=json.dumps(signer.sign(confirm)))
        assert (r.status_code, r.json()["status"]) == (200, "subscribed")
        assert fetched == [link]
        evil = signer.sign({**confirm, "SubscribeURL": "https://evil.example/confirm"})
        assert client.post("/webhooks/ses", content=json.dumps(evil)).status_code == 400
        unsigned = {**signer.sign(confirm), "Signature": "AAAA"}
        assert client.post("/webhooks/ses", content=json.dumps(unsigned)).status_code == 403
        assert fetched == [link]  # neither followed
