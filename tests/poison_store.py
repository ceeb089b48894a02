"""`digest` with a bug in storing one feed, as the red team reproduced it (issue 23):
``python -m tests.poison_store poll`` runs the real command in a real process, except that
storing the posts of any feed whose URL holds "poison" raises a TypeError, in the store thread.
"""

from __future__ import annotations

import runpy
from datetime import datetime, timedelta

from digest.ingest import feedstore, writer
from digest.ingest.feedstore import Stored
from digest.storage import Database
from digest.types import FeedResult

POISON = "poison"
BUG = "'NoneType' object is not subscriptable"
_real = feedstore.store_results


def poisoned(
    db: Database, results: list[FeedResult], now: datetime, poll_interval: timedelta
) -> list[Stored]:
    """feedstore.store_results, but a batch holding a poison feed's posts meets a bug."""
    if any(POISON in r.job.url and r.data is not None for r in results):
        raise TypeError(BUG)
    return _real(db, results, now, poll_interval)


def install() -> None:
    for module in (feedstore, writer):
        setattr(module, "store_results", poisoned)  # noqa: B010 - writer imported the name


if __name__ == "__main__":
    install()
    runpy.run_module("digest", run_name="__main__", alter_sys=True)
