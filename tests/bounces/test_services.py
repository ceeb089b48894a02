"""Sending services' payloads as reports; SNS signatures and certificate URLs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.bounces import sns
from digest.bounces.services import postmark_report, ses_reports
from digest.errors import InputError
from digest.storage import Database
from digest.types import BounceKind
from tests.sns_helpers import CERT_URL, Signer, notification, ses_bounce, ses_complaint


def test_ses_bounces_and_complaints() -> None:
    [hard] = ses_reports(ses_bounce("Ann@Example.com", message_id="<1.ann@example.org>"))
    assert (hard.kind, hard.note, hard.recipients) == (
        BounceKind.HARD,
        "5.1.1",
        ("ann@example.com",),
    )
    assert hard.message_id == "<1.ann@example.org>"  # ours, not SES's own
    assert hard.diagnostic == "smtp; 550 5.1.1 user unknown"
    assert hard.at == datetime(2026, 1, 10, 8, 4, tzinfo=UTC)
    assert "bounces@news.example.org" in hard.addressed_to
    [soft] = ses_reports(ses_bounce("a@b.example", "Transient"))
    assert soft.kind == BounceKind.SOFT
    assert ses_reports(ses_bounce("a@b.example"))[0].message_id == "<ses-own@email.amazonses.com>"
    [complaint] = ses_reports(ses_complaint("a@b.example", feedback=None))
    assert complaint.kind == BounceKind.COMPLAINT  # SES often leaves the type out
    [not_spam] = ses_reports(ses_complaint("a@b.example", feedback="not-spam"))
    assert not_spam.kind is None and not_spam.ignored
    assert ses_reports({"notificationType": "Delivery"}) == []
    assert ses_reports({"eventType": "Bounce", "bounce": "garbage"}) == []


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("HardBounce", BounceKind.HARD),
        ("SoftBounce", BounceKind.SOFT),
        ("SpamComplaint", BounceKind.COMPLAINT),
        ("AutoResponder", None),
        ("Unknown", None),
    ],
)
def test_postmark(kind: str, expected: BounceKind | None) -> None:
    report = postmark_report(
        {"RecordType": "Bounce", "ID": 42, "Type": kind, "Email": "Ann@example.com",
         "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
         "BouncedAt": "2026-01-10T08:04:00Z"}
    )  # fmt: skip
    assert (report.kind, report.recipients) == (expected, ("ann@example.com",))
    assert report.ignored == (expected is None)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_message_verifies_and_any_change_breaks_it(version: str) -> None:
    signer = Signer()
    message = signer.sign(notification(ses_bounce("a@b.example")), version)
    assert sns.verify(message, signer.pem)
    assert not sns.verify(
        {**message, "Message": message["Message"].replace("a@b", "c@d")}, signer.pem
    )
    assert not sns.verify({**message, "TopicArn": "arn:aws:sns:us-east-1:1:other"}, signer.pem)
    assert not sns.verify(message, Signer().pem)  # another key
    assert not sns.verify({**message, "SignatureVersion": "3"}, signer.pem)
    assert not sns.verify({**message, "Signature": "not base64!"}, signer.pem)


def test_subscription_confirmations_sign_their_own_fields() -> None:
    signer = Signer()
    confirm = signer.sign({
        "Type": "SubscriptionConfirmation", "MessageId": "c-1", "Token": "tok",
        "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": "You have chosen to subscribe",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
        "Timestamp": "2026-01-10T08:00:00.000Z",
    })  # fmt: skip
    assert sns.verify(confirm, signer.pem)
    assert not sns.verify({**confirm, "SubscribeURL": "https://evil.example/"}, signer.pem)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (CERT_URL, True),
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem", True),
        ("http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem", False),
        ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", False),
        ("https://evil.example/sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://user@sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("https://s3.amazonaws.com/x.pem", False),
    ],
)
def test_certificates_come_only_from_sns_hosts(url: str, ok: bool) -> None:
    assert sns.sns_url_ok(url) == ok


def test_a_certificate_is_fetched_once_and_kept(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer, fetched = Signer(), []

    def fake_get(url: str) -> bytes:
        fetched.append(url)
        return signer.pem

    monkeypatch.setattr(sns, "http_get", fake_get)
    assert sns.certificate(db, CERT_URL) == signer.pem
    assert sns.certificate(Database(db.url), CERT_URL) == signer.pem  # a restart: still kept
    assert fetched == [CERT_URL]
    with pytest.raises(InputError, match="not on an SNS host"):
        sns.certificate(db, "https://evil.example/cert.pem")
    assert fetched == [CERT_URL]  # nothing fetched from elsewhere
    monkeypatch.setattr(sns, "http_get", lambda url: b"<html>not a cert</html>")
    with pytest.raises(InputError, match="not a PEM certificate"):
        sns.certificate(db, CERT_URL.replace("0000test", "other"))
