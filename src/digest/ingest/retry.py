"""`digest feeds retry URL`: a feed's health and backoff reset, so the next poll fetches it
(a 410 is otherwise forever: the only way back was a changed URL, which duplicated posts)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select, update

from digest.errors import InputError
from digest.ingest import policy
from digest.storage import Database
from digest.tables import FEEDS
from digest.types import FeedStatus

# What a reset writes: the health as policy.fresh_health has it, and no HTTP validators (the
# next request is a plain GET: a server that came back may not know its old ETags).
RESET = {
    **dataclasses.asdict(policy.fresh_health()),
    "etag": None,
    "last_modified": None,
    "body_hash": None,
}
_RESET = update(FEEDS).where(FEEDS.c.id == bindparam("feed_id_")).values(RESET)


@dataclass(frozen=True)
class Retried:
    """A feed whose health was reset, and what it was before."""

    url: str
    title: str | None
    was: FeedStatus
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {"url": self.url, "title": self.title, "was": str(self.was), "error": self.error}


def reset_health(conn: Any, feed_ids: Sequence[int]) -> None:
    """Reset the health of ``feed_ids`` (one executemany) in the caller's transaction."""
    if feed_ids:
        conn.execute(_RESET, [{"feed_id_": i} for i in feed_ids])


def retry_feed(db: Database, url: str) -> Retried:
    """Reset the feed at ``url`` (as feeds.opml names it, or where it moved to); InputError
    when no feed has that URL."""
    url = url.strip()
    with db.begin() as conn:
        query = _columns().where(or_(FEEDS.c.source_url == url, FEEDS.c.url == url))
        row = conn.execute(query.order_by(FEEDS.c.active.desc(), FEEDS.c.id)).first()
        if row is None:
            raise InputError(f"no feed at {url}: `digest feeds` lists them")
        reset_health(conn, [row.id])
        return _retried(row)


def retry_failing(db: Database) -> list[Retried]:
    """Reset every active feed that is failing (an error, backing off, gone)."""
    with db.begin() as conn:
        failing = FEEDS.c.status.in_(sorted(policy.FAILING))
        query = _columns().where(FEEDS.c.active.is_(True), failing)
        rows = list(conn.execute(query.order_by(FEEDS.c.id)))
        reset_health(conn, [r.id for r in rows])
        return [_retried(r) for r in rows]


def _columns() -> Any:
    c = FEEDS.c
    return select(c.id, c.source_url, c.title, c.status, c.last_error, c.active)


def _retried(row: Any) -> Retried:
    return Retried(row.source_url, row.title, FeedStatus(row.status), row.last_error)
