"""What polls leave behind for whoever watches the service: the last poll's record and the
running count of requests by outcome, kept in the meta table (so `digest poll` by hand and
the daemon add to the same numbers, and a restart loses none of them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from digest import metakeys
from digest.storage import Database
from digest.tables import COUNTS
from digest.types import FetchOutcome

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

LAST_POLL_KEY = metakeys.LAST_POLL
FETCH_TOTALS_KEY = metakeys.FETCH_TOTALS
# The counts row of the posts stored: counting the table grows with history (78,000 posts
# at five years, bench/scrape.py: 48-64 ms on PostgreSQL, a sequential scan; 0.07 ms on
# SQLite, whose count(*) walks the smallest index), the row costs 0.2 ms on either.
POSTS = "posts"


def record_poll(
    db: Database, started: datetime, record: dict[str, Any], fetches: Mapping[FetchOutcome, int]
) -> None:
    """Keep the poll that started at ``started`` (its summary's ``record``) as the last one,
    and add its requests (``fetches``, by outcome, as the poll counted them) to the running
    totals. The caller holds the poll lock: no other poll writes these keys meanwhile.

    The poll counts them as it stores them: counting the Fetch rows since ``started`` instead
    scanned the whole table (two weeks of history, 1.7 M rows at 5,000 hourly feeds, no index
    on the time alone: 0.1 s on SQLite) at every round of the daemon, every few seconds."""
    totals = fetch_totals(db)
    for outcome, n in fetches.items():
        totals[str(outcome)] += n
    db.set_meta(FETCH_TOTALS_KEY, json.dumps(totals))
    db.set_meta(LAST_POLL_KEY, json.dumps({"at": started.isoformat(), **record}))


def add_posts(conn: Connection, n: int) -> None:
    """Count ``n`` posts stored, in the transaction that stores them."""
    if not n:
        return
    added = conn.execute(update(COUNTS).where(COUNTS.c.name == POSTS).values(n=COUNTS.c.n + n))
    if not added.rowcount:
        conn.execute(insert(COUNTS), {"name": POSTS, "n": n})


def post_total(s: Session | Connection) -> int:
    """Posts stored, ever (none are deleted)."""
    return int(s.scalar(select(COUNTS.c.n).where(COUNTS.c.name == POSTS)) or 0)


def last_poll(db: Database) -> dict[str, Any] | None:
    """The last poll's record: ``at`` (when it started), feeds, new_posts, updated_posts,
    not_modified, errors, elapsed_s. None before the first poll."""
    return last_poll_of(db.get_meta(LAST_POLL_KEY))


def last_poll_of(text: str | None) -> dict[str, Any] | None:
    """last_poll from the stored text of its meta row."""
    data = _parse(text)
    return data if "at" in data else None


def fetch_totals(db: Database) -> dict[str, int]:
    """Requests for feeds ever made, by outcome (every FetchOutcome, zeros included)."""
    return fetch_totals_of(db.get_meta(FETCH_TOTALS_KEY))


def fetch_totals_of(text: str | None) -> dict[str, int]:
    """fetch_totals from the stored text of its meta row."""
    data = _parse(text)
    return {str(o): int(data.get(o, 0)) for o in FetchOutcome}


def _parse(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:  # hand-edited; the next poll writes it afresh
        return {}
    return data if isinstance(data, dict) else {}
