"""The parser workers' side of a poll: feed bytes to rows ready to store.

Runs in the poll's process pool, so it imports no SQLAlchemy (parser processes stay small)
and returns plain tuples (they pickle fastest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.errors import ParseError
from digest.types import FeedData, PostData
from digest.urls import canonical_url

# A post's stored values, in this order (rows cross the process boundary as plain tuples).
POST_COLUMNS = (
    "key",
    "title",
    "link",
    "canonical_url",
    "author",
    "published",
    "updated",
    "date",
    "text",
    "words",
    "teaser",
    "content_hash",
)


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed feed as the store needs it: names fitted to the columns, one row per post."""

    title: str | None
    site_url: str | None
    rows: tuple[tuple[Any, ...], ...]  # POST_COLUMNS values, fitted to the columns
    warning: str | None = None  # the parser's complaint about a body it could still read


def parse_feed(
    body: bytes, url: str, headers: Mapping[str, str] | None = None, *, now: datetime
) -> FeedData:
    """digest.ingest.parse.parse_feed, imported on first use: a poll that parses nothing in this
    process (all 304s, or a process pool) never loads feedparser here (80 ms of start-up)."""
    from digest.ingest.parse import parse_feed as parse

    return parse(body, url, headers, now=now)


def parse_or_failure(
    body: bytes, url: str, headers: Mapping[str, str], now: datetime
) -> ParsedFeed | str:
    """parse_feed, then the rows to store; any failure turned into its one-line message.

    Runs in a worker process: what it returns must pickle (plain tuples pickle fastest), and a
    bug in the parser must cost one feed, never the poll. The per-post work that needs no
    database (fitting values to columns, canonical URLs) is done here, on the workers' cores,
    rather than in the store thread, which shares one core with the event loop.
    """
    try:
        data = parse_feed(body, url, headers, now=now)
        return ParsedFeed(
            title=fit(data.title, 512),
            site_url=fit(data.site_url, 2048, cut=False),
            rows=tuple(post_row(p) for p in data.posts),
            warning=fit(data.warning, 512),
        )
    except ParseError as e:
        return e.message
    except Exception as e:  # noqa: BLE001 - hostile input must not end the poll
        return f"the parser failed: {type(e).__name__}: {e}"


def post_row(post: PostData) -> tuple[Any, ...]:
    """A post's POST_COLUMNS values, fitted to the columns (hostile feeds send anything)."""
    key = post.key if len(post.key) <= 2048 else "sha256:" + _sha(post.key)
    link = fit(post.link, 2048, cut=False)
    return (
        clean(key),
        clean(post.title),
        link,
        _canonical(link),
        fit(post.author, 512),
        post.published,
        post.updated,
        post.published or post.updated,
        clean(post.text),
        post.words,
        post.teaser,
        post.content_hash[:64],
    )


def _canonical(link: str | None) -> str | None:
    if not link:
        return None
    try:
        value = canonical_url(link, normalized=True)
    except ValueError:
        return link
    return value if len(value) <= 2048 else link


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


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
