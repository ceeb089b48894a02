"""A StoreWriter on a store thread that outlives it (the daemon's, one for every round)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from digest.ingest import writer as writer_module
from digest.ingest.feedstore import Stored
from digest.ingest.writer import MAX_BATCH, StoreWriter
from digest.storage import Database
from digest.types import FeedJob, FeedResult, FeedStatus, FetchOutcome, Outcome

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def results(n: int) -> list[FeedResult]:
    ok = Outcome(FeedStatus.NOT_MODIFIED, 304)
    jobs = [FeedJob(k, f"https://f{k}.example/feed", None, None, None) for k in range(n)]
    return [FeedResult(job, ok, FetchOutcome.NOT_MODIFIED) for job in jobs]


def test_close_waits_for_every_batch_and_leaves_the_thread_running(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored: list[str] = []

    def store_results(_db: Any, batch: list[FeedResult], *_args: Any) -> list[Stored]:
        stored.extend(r.job.url for r in batch)
        return [Stored() for _r in batch]

    monkeypatch.setattr(writer_module, "store_results", store_results)
    thread = concurrent.futures.ThreadPoolExecutor(1)
    many = results(2 * MAX_BATCH + 1)  # three batches: each full one queues the next

    async def one_round(batch: list[FeedResult]) -> None:
        writer = StoreWriter(sqlite_db, T0, timedelta(hours=1), thread)
        for result in batch:
            writer.store(result)
        await asyncio.to_thread(writer.close)
        # Every result stored when close returns, though nothing awaited their futures.
        assert stored == [r.job.url for r in batch]

    try:
        asyncio.run(one_round(many))
        stored.clear()
        asyncio.run(one_round(results(3)))  # the thread serves the next writer
    finally:
        thread.shutdown(wait=True)
