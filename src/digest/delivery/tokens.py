"""Unsubscribe tokens: a subscriber id with an HMAC over it and their address; can't be forged.

The MAC covers the address too, so a token dies with its subscriber: if the row is removed and
its id reused by someone else, the old token names nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_PURPOSE = b"digest/unsubscribe/v1"
_MAC_BYTES = 16  # 128 bits: guessing is hopeless, and the URL stays short
_TOKEN = re.compile(r"([1-9][0-9]{0,17})\.([A-Za-z0-9_-]{22})")


def make_token(key: str, subscriber_id: int, email: str) -> str:
    """The token naming one subscriber: ``ID.MAC`` (URL-safe, no padding)."""
    mac = _mac(key, subscriber_id, email)
    return f"{subscriber_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


def token_id(token: str) -> int | None:
    """The subscriber id a well-formed token claims (not yet checked), else None."""
    match = _TOKEN.fullmatch(token)
    return int(match.group(1)) if match else None


def check_token(key: str, token: str, subscriber_id: int, email: str) -> bool:
    """True when token was made with key for exactly this subscriber and address."""
    match = _TOKEN.fullmatch(token)
    if not match or int(match.group(1)) != subscriber_id:
        return False
    # Compare the text, not decoded bytes: the last base64 character carries spare bits, and
    # decoding would accept several spellings of one MAC.
    return hmac.compare_digest(
        token.encode("ascii"), make_token(key, subscriber_id, email).encode()
    )


def _mac(key: str, subscriber_id: int, email: str) -> bytes:
    message = b"\0".join((_PURPOSE, str(subscriber_id).encode(), email.lower().encode("utf-8")))
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()[:_MAC_BYTES]
