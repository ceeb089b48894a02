"""A poll whose first requests go out before SQLAlchemy has loaded (issue 22: start fast).

`import sqlalchemy` is ~120 ms of a warm poll's 270 ms before its first request, and the
event loop then waits ~50 ms for each answer doing nothing. So when start_poll (ingest/idle.py,
the standard library's sqlite3) has taken the poll lock and read the jobs, a thread imports
the database layer, opens the database and adopts the lock while this thread loads httpx and
sends the first requests; results wait for the database before they are stored. Anything
unusual was left to the whole poll by start_poll; a database that fails to open here sends
the whole poll too (the lock row released first), which says what is wrong as it always did.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from typing import TYPE_CHECKING

from digest.config import Settings
from digest.ingest.idle import EarlyStart, release_early
from digest.ingest.poller import Poller
from digest.ingest.summary import PollSummary, ProgressFn
from digest.lockholder import Held

if TYPE_CHECKING:
    from digest.ingest.poll import OpenedLate
    from digest.storage import Database


def poll_early(
    settings: Settings, start: EarlyStart, progress: ProgressFn | None = None
) -> PollSummary | None:
    """Fetch ``start``'s jobs while the database opens, then end as poll_feeds ends; None when
    the database could not be opened (nothing stored, the lock row released: run the whole
    poll)."""
    started = time.monotonic()
    held = Held(start.holder, None)
    opening = _Opening(settings.database.url, held)
    summary = PollSummary(held=start.held, skipped=sum(start.held.counts.values()))
    poller = Poller(opening, settings, start.now, held.stop, summary, progress)
    try:
        asyncio.run(poller.run(start.jobs, None, None))
    except BaseException:
        opened = opening.wait()
        if opened is None:
            release_early(start)
            return None
        opened.close()
        raise
    opened = opening.wait()
    if opened is None:
        release_early(start)
        return None
    return opened.finish(start.now, summary, started)


# While the database's thread imports and opens (~150 ms of CPU), the event loop, woken by each
# answer, waits for that thread to give up the interpreter lock: up to the switch interval each
# time, 5 ms by default. 0.5 ms while it opens: a warm poll's requests (500 feeds, 50 ms
# latency, 16 connections) from first to last answer 1.81 -> 1.77 s, median of 8-10 runs
# interleaved with the 5 ms default (strace timestamps), the bare client's 1.70 s.
OPENING_SWITCH_INTERVAL_S = 0.0005


class _Opening:
    """The database layer imported, the database opened and the lock adopted, in a thread
    started by start() (the poller's LateDatabase)."""

    def __init__(self, url: str, held: Held) -> None:
        self.future: concurrent.futures.Future[Database] = concurrent.futures.Future()
        self._opened: OpenedLate | None = None
        self._thread = threading.Thread(
            target=self._open, args=(url, held), name="digest-open-database", daemon=True
        )
        self._started = False
        self._switch_interval = 0.0  # the process's, kept by start() while this opens

    def start(self) -> None:
        """Start opening (once; from the poll's thread only)."""
        if not self._started:
            self._started = True
            self._switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(OPENING_SWITCH_INTERVAL_S)
            self._thread.start()

    def _open(self, url: str, held: Held) -> None:
        try:
            from digest.ingest.poll import OpenedLate

            self._opened = OpenedLate(url, held)
        except Exception as e:  # noqa: BLE001 - the whole poll meets it again and says it
            self.future.set_exception(e)
            return
        finally:
            sys.setswitchinterval(self._switch_interval)
        self.future.set_result(self._opened.db)

    def wait(self) -> OpenedLate | None:
        """The opened database once the thread is done; None when it failed."""
        self.start()  # a poll that stopped before its first request
        self._thread.join()
        return self._opened
