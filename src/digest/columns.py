"""Column widths of the schema, each named once, and values fitted to them.

tables.py declares its columns with these; whatever writes a value from outside (a feed, the
OPML file) fits it here first. No SQLAlchemy: the parser workers import this module, and they
stay small without it.
"""

from __future__ import annotations

URL = 2048  # feed, site, post and canonical URLs; a post's key (a GUID is often a URL)
NAME = 512  # feed titles, categories, authors
ETAG = 1024
LAST_MODIFIED = 128
HASH = 64  # a SHA-256 in hex
STATUS = 32  # the StrEnums of types.py, section keys
WARNING = 512  # the parser's complaint about a body it could still read
EMAIL = 320  # RFC 3696: 64 + 1 + 255
PERSON = 256  # a subscriber's display name
SECTIONS = 256  # a subscriber's comma-separated section keys
MESSAGE_ID = 512
META_KEY = 128
IP = 45  # an IPv6 address as text, at its longest (with an IPv4 tail)
EVENT = 512  # what a subscriber event says beyond its kind


def fit(value: str | None, size: int, *, cut: bool = True) -> str | None:
    """``value`` without NUL characters, cut to ``size`` (or None if too long and not cut)."""
    if value is None:
        return None
    value = clean(value)
    if len(value) <= size:
        return value
    return value[:size] if cut else None


def clean(value: str) -> str:
    # PostgreSQL refuses NUL in text.
    return value.replace("\x00", "") if "\x00" in value else value
