"""Prunes in small batches, each its own short transaction (issue 22): the hourly prune of
sign-ups left unconfirmed, with what cascades from them, and the daily prune of fetch history.
On both databases (what is deleted, and how many transactions it takes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from digest.delivery import consent
from digest.delivery.consent import prune_unconfirmed, sign_up
from digest.delivery.subscribers import add_subscriber
from digest.ingest import feedstore
from digest.models import Delivery, Feed, Fetch, Issue, Subscriber, SubscriberEvent
from digest.storage import Database
from digest.types import DeliveryStatus, FetchOutcome

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def transactions(db: Database) -> list[list[str]]:
    """The statements of each transaction begun on ``db`` from now on, one list each."""
    seen: list[list[str]] = []

    def begun(_conn: Any) -> None:
        seen.append([])

    def ran(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if seen:
            seen[-1].append(statement)

    event.listen(db.engine, "begin", begun)
    event.listen(db.engine, "before_cursor_execute", ran)
    return seen


def deleting(seen: list[list[str]], table: str) -> list[list[str]]:
    return [t for t in seen if any(s.startswith(f"DELETE FROM {table}") for s in t)]


def count(db: Database, what: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(what)) or 0)


def test_stale_sign_ups_are_deleted_in_batches_with_their_history(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent, "PRUNE_BATCH", 2)
    stale = T0 - timedelta(days=8)
    for n in range(5):
        sign_up(db, f"stale{n}@example.com", name=None, sections=None, now=stale)
    sign_up(db, "recent@example.com", name=None, sections=None, now=T0 - timedelta(days=1))
    reader, _added = add_subscriber(db, "reader@example.com", now=stale)
    with db.session() as s:  # a stale sign-up with a delivery row: the cascade's other table
        s.add(Issue(number=1, window_start=stale, window_end=stale, created_at=stale,
                    subject="s", html="", text=""))  # fmt: skip
        s.flush()
        issue_id = s.scalar(select(Issue.id))
        ids = s.scalars(select(Subscriber.id).order_by(Subscriber.id)).all()
        s.execute(insert(Delivery), [
            {"issue_id": issue_id, "subscriber_id": i, "status": DeliveryStatus.SENT,
             "attempts": 1, "updated_at": stale} for i in (ids[0], reader.id)
        ])  # fmt: skip
    seen = transactions(db)
    assert prune_unconfirmed(db, T0) == 5
    assert len(deleting(seen, "subscribers")) == 3  # 2 + 2 + 1, each its own transaction
    with db.session() as s:
        assert sorted(s.scalars(select(Subscriber.email))) == [
            "reader@example.com",
            "recent@example.com",
        ]
        assert s.scalars(select(Delivery.subscriber_id)).all() == [reader.id]
        assert set(s.scalars(select(SubscriberEvent.subscriber_id))) <= {reader.id, ids[5]}
    assert prune_unconfirmed(db, T0) == 0


def test_fetch_history_is_pruned_in_batches(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feedstore, "FETCH_PRUNE_BATCH", 3)
    with db.session() as s:
        feed = Feed(source_url="https://a.example/feed", url="https://a.example/feed", added_at=T0)
        s.add(feed)
        s.flush()
        s.execute(insert(Fetch), [
            {"feed_id": feed.id, "at": T0 - timedelta(days=days), "url": feed.url,
             "outcome": FetchOutcome.NOT_MODIFIED}
            for days in (15, 15, 16, 20, 30, 40, 50, 13, 1)
        ])  # fmt: skip
    seen = transactions(db)
    feedstore.prune_fetches(db, T0)
    assert len(deleting(seen, "fetches")) == 3  # 3 + 3 + 1
    with db.session() as s:
        assert sorted(s.scalars(select(Fetch.at))) == [
            T0 - timedelta(days=13),
            T0 - timedelta(days=1),
        ]
