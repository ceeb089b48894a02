"""Taking a held lock over, as a run that found its holder's heartbeat late does, and hearing
the holder notice it."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from digest import locks
from digest.storage import Database


class TakenOverHeard(logging.Handler):
    """``heard`` is set once a holder logs that its lock was taken over while held."""

    def __init__(self) -> None:
        super().__init__()
        self.heard = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "taken over while held" in record.getMessage():
            self.heard.set()


@contextlib.contextmanager
def hearing_takeovers(monkeypatch: pytest.MonkeyPatch) -> Iterator[TakenOverHeard]:
    """Holders beat every 20 ms (not 10 s), and the handler hears them notice a takeover."""
    monkeypatch.setattr(locks, "HEARTBEAT_EVERY", timedelta(milliseconds=20))
    handler = TakenOverHeard()
    logger = logging.getLogger("digest.locks")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def take_over(db: Database, name: str) -> locks.DatabaseLock:
    """Take lock ``name`` from its live holder, as if its heartbeat were late."""
    lock = locks.DatabaseLock(db, name, stale_after=timedelta(seconds=-1))
    lock.acquire()
    return lock
