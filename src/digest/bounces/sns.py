"""Amazon SNS messages, believed only when signed by SNS (its documented verification).

The signature is RSA over the message's canonical string (SignatureVersion 1: SHA1,
2: SHA256), made with the key of the certificate at SigningCertURL; that URL must be https on
SNS's own hosts (``sns.<region>.amazonaws.com``), or anyone could sign with a certificate of
their own. A certificate is fetched once and kept in the database (``meta``), so a restart does
not fetch it again and tests can put a certificate of theirs there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

from digest.errors import InputError
from digest.storage import Database

# SNS's hosts: sns.us-east-1.amazonaws.com, sns.cn-north-1.amazonaws.com.cn.
_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_CERT_BYTES = 16 * 1024  # a PEM certificate is ~2 KB
_FETCH_TIMEOUT_S = 10.0
# The fields signed, in order, for each message type (absent optional ones are skipped).
_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")


def sns_url_ok(url: str) -> bool:
    """True for an https URL on one of SNS's own hosts (a certificate, a subscribe link)."""
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and parts.port in (None, 443)
        and parts.username is None
        and bool(_HOST.fullmatch(parts.hostname or ""))
    )


def string_to_sign(message: dict[str, Any]) -> bytes:
    """The canonical "Key\\nvalue\\n" string SNS signs for this message's type."""
    keys = _NOTIFICATION if message.get("Type") == "Notification" else _SUBSCRIPTION
    lines = [f"{key}\n{message[key]}\n" for key in keys if isinstance(message.get(key), str)]
    return "".join(lines).encode("utf-8")


def verify(message: dict[str, Any], certificate_pem: bytes) -> bool:
    """True when the message's signature checks out with the certificate's public key."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    version = message.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # SNS SignatureVersion 1 is SHA1withRSA, as SNS signs it
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        return False
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    except (ValueError, binascii.Error):
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        return False
    return True


def certificate(db: Database, url: str) -> bytes:
    """The signing certificate at ``url`` (an SNS host's): from the database, else fetched once
    and kept. InputError for a URL elsewhere or a certificate that cannot be had."""
    if not sns_url_ok(url):
        raise InputError(f"SigningCertURL is not on an SNS host: {url[:200]!r}")
    key = "sns-cert:" + hashlib.sha256(url.encode()).hexdigest()[:40]
    kept = db.get_meta(key)
    if kept is not None:
        return kept.encode("ascii")
    pem = _fetch(url)
    db.set_meta(key, pem.decode("ascii"))
    return pem


def http_get(url: str) -> bytes:
    """GET an SNS URL (its certificate; a subscription's confirmation link): the body, at most
    _CERT_BYTES; InputError when it fails. Tests replace it: they have no network."""
    import httpx

    try:
        with httpx.stream("GET", url, timeout=_FETCH_TIMEOUT_S) as response:
            if response.status_code != 200:
                raise InputError(f"{url}: HTTP {response.status_code}")
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _CERT_BYTES:
                    raise InputError(f"{url}: more than {_CERT_BYTES} bytes")
            return body
    except httpx.HTTPError as e:
        raise InputError(f"{url}: {e}") from e


def _fetch(url: str) -> bytes:
    pem = http_get(url)
    if not pem.startswith(b"-----BEGIN CERTIFICATE-----"):
        raise InputError(f"{url}: not a PEM certificate")
    return pem
