"""Signed tokens: a subscriber id with an HMAC over a purpose, the id and the address; can't be
forged, and each serves one purpose only.

The MAC covers the address too, so a token dies with its subscriber: if the row is removed and
its id reused by someone else, the old token names nobody. The purpose is inside the MAC: an
unsubscribe token is no preferences token, and neither confirms anything.

    unsubscribe, preferences   ID.MAC           in every issue; they never expire
    confirm                    ID.EXPIRES.MAC   in the confirmation email; expires
    form (CSRF)                EXPIRES.MAC      in each form, for one form and one subscriber
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
_MAC_BYTES = 16  # 128 bits: guessing is hopeless, and the URL stays short
_MAC = r"[A-Za-z0-9_-]{22}"
_ID = r"[1-9][0-9]{0,9}"
_STAMP = r"[0-9]{1,12}"  # unix seconds
# Ids are 32-bit integers in the database (PostgreSQL's integer): a larger one names nobody,
# and asking PostgreSQL for it is an error, not "no such row".
MAX_ID = 2**31 - 1
# The last moment a token may name: datetime ends at year 9999 (a later stamp can't be one).
MAX_STAMP = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp())
_TOKEN = re.compile(rf"({_ID})\.({_MAC})")
_CONFIRM = re.compile(rf"({_ID})\.({_STAMP})\.({_MAC})")
_FORM = re.compile(rf"({_STAMP})\.({_MAC})")


def make_token(key: str, subscriber_id: int, email: str, purpose: str = UNSUBSCRIBE) -> str:
    """The token naming one subscriber for one purpose: ``ID.MAC`` (URL-safe, no padding)."""
    mac = _mac(key, f"digest/{purpose}/v1", str(subscriber_id), email.lower())
    return f"{subscriber_id}.{mac}"


def token_id(token: str) -> int | None:
    """The subscriber id a well-formed token claims (not yet checked), else None."""
    match = _TOKEN.fullmatch(token)
    return _id(match.group(1)) if match else None


def check_token(
    key: str, token: str, subscriber_id: int, email: str, purpose: str = UNSUBSCRIBE
) -> bool:
    """True when token was made with key for exactly this subscriber, address and purpose."""
    match = _TOKEN.fullmatch(token)
    if not match or int(match.group(1)) != subscriber_id:
        return False
    # Compare the text, not decoded bytes: the last base64 character carries spare bits, and
    # decoding would accept several spellings of one MAC.
    return _same(token, make_token(key, subscriber_id, email, purpose))


def make_confirm_token(key: str, subscriber_id: int, email: str, expires: datetime) -> str:
    """The confirmation link's token: ``ID.EXPIRES.MAC``, good until ``expires``."""
    stamp = str(int(expires.timestamp()))
    mac = _mac(key, "digest/confirm/v1", str(subscriber_id), email.lower(), stamp)
    return f"{subscriber_id}.{stamp}.{mac}"


def confirm_claim(token: str) -> tuple[int, datetime] | None:
    """(subscriber id, expiry) a well-formed confirm token claims (not yet checked), else None."""
    match = _CONFIRM.fullmatch(token)
    subscriber_id = _id(match.group(1)) if match else None
    expires = _stamp(match.group(2)) if match else None
    if subscriber_id is None or expires is None:
        return None
    return subscriber_id, expires


def check_confirm_token(key: str, token: str, subscriber_id: int, email: str) -> bool:
    """True when the confirm token is ours for exactly this subscriber and address, expired or
    not (the caller looks at the expiry: an expired link still earns a page that offers a new
    one)."""
    claim = confirm_claim(token)
    if claim is None or claim[0] != subscriber_id:
        return False
    return _same(token, make_confirm_token(key, subscriber_id, email, claim[1]))


def make_form_token(key: str, form: str, subject: int, expires: datetime) -> str:
    """A form's CSRF token: good for one form (``subscribe``, ``confirm``, ``preferences``) and
    one subscriber id (0: nobody yet) until ``expires``."""
    stamp = str(int(expires.timestamp()))
    return f"{stamp}.{_mac(key, 'digest/form/v1', form, str(subject), stamp)}"


def check_form_token(key: str, token: str, form: str, subject: int, now: datetime) -> bool:
    """True when ``token`` is a live CSRF token of ours for this form and subscriber."""
    match = _FORM.fullmatch(token)
    expires = _stamp(match.group(1)) if match else None
    if expires is None:
        return False
    return expires > now and _same(token, make_form_token(key, form, subject, expires))


def _id(digits: str) -> int | None:
    value = int(digits)
    return value if value <= MAX_ID else None


def _stamp(digits: str) -> datetime | None:
    value = int(digits)
    return datetime.fromtimestamp(value, UTC) if value <= MAX_STAMP else None


def _mac(key: str, *parts: str) -> str:
    message = b"\0".join(part.encode("utf-8") for part in parts)
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("ascii"))
