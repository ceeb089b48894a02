"""A bug in storing one feed, as the red team reproduced it (issue 23): storing the posts of
any feed whose URL holds "poison" raises a TypeError in the poll's store thread.

In this process: ``install()`` (or monkeypatch ``poisoned`` in). In a real `digest` process
(`digest poll`, `digest run`): pass ``process_env(folder)`` in its environment, a
sitecustomize that installs it as Python starts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from digest.ingest import feedstore, writer
from digest.ingest.feedstore import Stored
from digest.storage import Database
from digest.types import FeedResult

POISON = "poison"
BUG = "'NoneType' object is not subscriptable"
REPO = Path(__file__).resolve().parents[1]
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


def process_env(folder: Path) -> dict[str, str]:
    """The environment that puts the bug in a `digest` process started with it."""
    hook = folder / "poison-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text("import tests.poison_store as p\n\np.install()\n")
    return {"PYTHONPATH": f"{hook}:{REPO}"}
