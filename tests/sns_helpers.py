"""Signed SNS messages for tests: a certificate and key made here, messages signed with it the
way SNS signs them, and the certificate put where digest keeps the ones it fetched."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from digest.bounces.sns import string_to_sign
from digest.storage import Database

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000test.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:digest-ses"


class Signer:
    """An RSA key and a self-signed certificate for it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        signed = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
        return {**signed, "Signature": base64.b64encode(signature).decode("ascii")}

    def trust(self, db: Database, url: str = CERT_URL) -> None:
        """Put the certificate where digest keeps the ones it fetched (no network in tests)."""
        db.set_meta("sns-cert:" + hashlib.sha256(url.encode()).hexdigest()[:40], self.pem.decode())


def notification(body: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(body),
        "Timestamp": "2026-01-10T08:05:00.000Z",
    }


def ses_bounce(email: str, bounce_type: str = "Permanent", message_id: str = "") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-01-10T08:04:00.000Z",
            "feedbackId": "0100018c-feedback",
        },
        "mail": {
            "timestamp": "2026-01-10T08:00:00.000Z",
            "source": "bounces@news.example.org",
            "messageId": "0100018c-ses-id",
            "destination": [email],
            "headers": [{"name": "Message-ID", "value": message_id}] if message_id else [],
            "commonHeaders": {"messageId": "<ses-own@email.amazonses.com>"},
        },
    }


def ses_complaint(email: str, feedback: str | None = "abuse") -> dict[str, Any]:
    complaint: dict[str, Any] = {
        "complainedRecipients": [{"emailAddress": email}],
        "timestamp": "2026-01-10T09:00:00.000Z",
        "feedbackId": "0100018c-complaint",
        "userAgent": "Yahoo!-Mail-Feedback/2.0",
    }
    if feedback is not None:
        complaint["complaintFeedbackType"] = feedback
    return {
        "notificationType": "Complaint",
        "complaint": complaint,
        "mail": {"source": "bounces@news.example.org", "messageId": "x"},
    }
