"""Addresses erased at their owners' request, kept only as a keyed hash of the address.

The key (the "forget salt") is generated once and stored in the database, apart from the key
that signs links: rotating newsletter.secret_key must not bring anyone back. Without the salt
a stolen list of hashes can't be checked against a list of addresses by hashing them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.errors import StorageError
from digest.models import Forgotten, Meta
from digest.storage import Database, utcnow

SALT_KEY = "forget_salt"


def salt(db: Database) -> str:
    """The forget salt, generated on first use (call it before opening a session: storing a
    new one takes SQLite's write lock)."""
    value = db.get_meta(SALT_KEY)
    if value is None:
        # Another process may store one first; then we read theirs.
        with contextlib.suppress(StorageError), db.session() as s:
            s.add(Meta(key=SALT_KEY, value=secrets.token_hex(32), updated_at=utcnow()))
        value = db.get_meta(SALT_KEY)
    assert value is not None
    return value


def address_hash(salt_value: str, address: str) -> str:
    """The 64-hex-digit keyed hash an erased address is remembered by."""
    return hmac.new(salt_value.encode(), address.lower().encode(), hashlib.sha256).hexdigest()


def is_forgotten(s: Session, salt_value: str, address: str) -> bool:
    return s.get(Forgotten, address_hash(salt_value, address)) is not None


def forgotten_hashes(s: Session) -> set[str]:
    return set(s.scalars(select(Forgotten.digest)))


def remember(s: Session, salt_value: str, address: str) -> None:
    """Keep the hash of an address being erased (once)."""
    digest = address_hash(salt_value, address)
    if s.get(Forgotten, digest) is None:
        s.add(Forgotten(digest=digest, forgotten_at=utcnow()))


def release(s: Session, salt_value: str, address: str) -> None:
    """Its owner confirmed a new subscription: the address is no longer forgotten."""
    row = s.get(Forgotten, address_hash(salt_value, address))
    if row is not None:
        s.delete(row)
