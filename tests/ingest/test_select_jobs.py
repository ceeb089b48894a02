"""select_jobs for the daemon's rounds (due_only) reads only the feeds that may be due or are
held back for a reason a summary names: the same jobs, in the same order, as the policy over
every feed, and the same held counts but the not-due ones."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.ingest import policy
from digest.ingest.feedstore import JOB_STATE, select_jobs
from digest.ingest.policy import Held, Hold
from digest.models import FEEDS
from digest.storage import Database
from digest.types import FeedJob
from tests.ingest.test_idle import FEEDS_IN_LIST, STATES, T0, Idle


@pytest.fixture
def idle(sqlite_db: Database, sqlite_url: str, tmp_path: Path) -> Idle:
    return Idle(sqlite_db, sqlite_url, tmp_path)


def every_feed(idle: Idle, now: datetime, force: bool) -> tuple[list[FeedJob], Held]:
    """What select_jobs chose before it filtered in SQL: the policy over every active feed."""
    with idle.db.begin() as conn:
        feeds = list(conn.execute(select(*JOB_STATE).where(FEEDS.c.active.is_(True))))
    fetchable = sorted(
        (f for f in feeds if policy.hold(f, now, True, force) is None), key=policy.fetch_order
    )
    jobs = [FeedJob(f.id, f.url, f.etag, f.last_modified, f.body_hash) for f in fetchable]
    return jobs, policy.held(feeds, now, True, force)


def test_due_only_reads_less_and_chooses_the_same(idle: Idle) -> None:
    not_due_seen = 0
    for seed in range(60):
        rng = random.Random(seed)
        idle.set_feeds(*(rng.choice(STATES) for _ in range(FEEDS_IN_LIST)))
        force = rng.random() < 0.3
        jobs, held = select_jobs(idle.db, T0, due_only=True, force=force)
        expected_jobs, expected = every_feed(idle, T0, force)
        assert jobs == expected_jobs, seed
        counts = {why: n for why, n in expected.counts.items() if why != Hold.NOT_DUE}
        assert (dict(held.counts), held.until) == (counts, expected.until), seed
        not_due_seen += expected.counts.get(Hold.NOT_DUE, 0)
    assert not_due_seen >= 10  # the draws had feeds not due, which were not read
