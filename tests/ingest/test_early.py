"""A poll started with sqlite3 (ingest/idle.py start_poll): the lock taken and the jobs read as
the whole poll takes and reads them, then adopted by the database layer (locks.holding)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from digest.errors import LockedError, StorageError
from digest.ingest.feedstore import prune_fetches, select_jobs
from digest.ingest.idle import EarlyStart, release_early, start_poll
from digest.ingest.summary import PollSummary
from digest.lockholder import Held, LockHolder, held_here
from digest.locks import POLLER, DatabaseLock, holding, read_holder
from digest.metakeys import lock_key
from tests.ingest.test_idle import FEEDS_IN_LIST, HELD_STATES, HOUR, STATES, T0, Idle
from tests.ingest.test_idle import idle as idle  # the fixture

# Fetchable states with distinct waits, so that the jobs' order (longest waiting first) shows.
WAITING = tuple({**STATES[2], "due_at": T0 - k * HOUR} for k in range(1, 4))


def test_it_starts_exactly_what_the_whole_poll_would_fetch(idle: Idle) -> None:
    verdicts = {"started": 0, "answered": 0}
    for seed in range(60):
        rng = random.Random(seed)
        pool = HELD_STATES if seed % 3 == 0 else STATES + WAITING
        idle.set_feeds(*(rng.choice(pool) for _ in range(FEEDS_IN_LIST)))
        force = rng.random() < 0.5

        jobs, held = select_jobs(idle.db, T0, due_only=False, force=force)
        start = start_poll(idle.settings, T0, force=force)

        if not jobs:
            assert isinstance(start, PollSummary), seed
            verdicts["answered"] += 1
            continue
        assert isinstance(start, EarlyStart), seed
        assert (start.jobs, start.held, start.now) == (jobs, held, T0), seed
        assert read_holder(idle.db, POLLER) == start.holder  # as DatabaseLock writes it
        assert held_here(start.holder.token)
        release_early(start)
        assert read_holder(idle.db, POLLER) is None and not held_here(start.holder.token)
        verdicts["started"] += 1
    assert min(verdicts.values()) >= 10, verdicts


def _all_new_now(idle: Idle) -> datetime:
    """Every feed never polled (all to fetch), pruned now: a lock taken now is fresh."""
    idle.set_feeds(*[STATES[0]] * FEEDS_IN_LIST)
    now = datetime.now(UTC)
    prune_fetches(idle.db, now)
    return now


def _started(idle: Idle) -> EarlyStart:
    start = start_poll(idle.settings, _all_new_now(idle))
    assert isinstance(start, EarlyStart)
    return start


def test_the_lock_taken_is_adopted_held_and_released(idle: Idle) -> None:
    start = _started(idle)
    now = start.now
    assert start_poll(idle.settings, now) is None  # held: the whole poll would say by whom
    with holding(idle.db, POLLER, adopt=Held(start.holder, None)) as held:
        assert read_holder(idle.db, POLLER) == start.holder and held.holder == start.holder
        with pytest.raises(LockedError, match=f"another poll holds .*: pid {os.getpid()} on "):
            DatabaseLock(idle.db, POLLER).acquire()
    assert read_holder(idle.db, POLLER) is None and not held_here(start.holder.token)
    assert isinstance(start_poll(idle.settings, now), EarlyStart)  # free again


def test_a_lock_taken_over_meanwhile_is_not_adopted(idle: Idle) -> None:
    start = _started(idle)
    other = LockHolder(1, "elsewhere", T0, T0, "theirs")
    idle.db.set_meta(lock_key(POLLER), other.to_json())
    with (
        pytest.raises(LockedError, match="another poll holds .*: pid 1 on elsewhere"),
        holding(idle.db, POLLER, adopt=Held(start.holder, None)),
    ):
        pass
    assert read_holder(idle.db, POLLER) == other and not held_here(start.holder.token)


# A process that takes the lock with start_poll and dies before the database layer adopts it.
KILLED = """
import os, sys
from datetime import UTC, datetime
from pathlib import Path
from digest.config import Settings
from digest.ingest.idle import EarlyStart, start_poll
settings = Settings().replace(database={"url": sys.argv[1]}, feeds={"opml": Path(sys.argv[2])})
start = start_poll(settings, datetime.now(UTC))
os._exit(0 if isinstance(start, EarlyStart) else 3)
"""


def test_a_lock_left_by_a_killed_poll_is_taken_over(idle: Idle) -> None:
    now = _all_new_now(idle)
    url = idle.settings.database.url
    dead = subprocess.Popen([sys.executable, "-c", KILLED, url, str(idle.opml)])
    assert dead.wait(timeout=120) == 0
    left = read_holder(idle.db, POLLER)
    assert left is not None and left.pid == dead.pid
    assert start_poll(idle.settings, now) is None  # the whole poll looks at who holds it
    lock = DatabaseLock(idle.db, POLLER)
    lock.acquire()  # its pid is gone: taken over
    assert read_holder(idle.db, POLLER) is not None
    assert read_holder(idle.db, POLLER).token == lock.token  # type: ignore[union-attr]
    lock.release()


class _OpensAs:
    """In place of OpenedLate: notes the switch interval the database's thread ran under."""

    seen: list[float] = []
    fail = False

    def __init__(self, url: str, held: Held) -> None:
        _OpensAs.seen.append(sys.getswitchinterval())
        if _OpensAs.fail:
            raise StorageError("cannot open")
        self.db = object()


@pytest.mark.parametrize("fail", [False, True])
def test_the_loop_waits_less_for_the_interpreter_while_the_database_opens(
    monkeypatch: pytest.MonkeyPatch, fail: bool
) -> None:
    import digest.ingest.early as early
    import digest.ingest.poll as poll

    monkeypatch.setattr(poll, "OpenedLate", _OpensAs)
    monkeypatch.setattr(_OpensAs, "seen", [])
    monkeypatch.setattr(_OpensAs, "fail", fail)
    before = sys.getswitchinterval()
    holder = LockHolder(1, "here", T0, T0, "0123456789abcdef")
    opening = early._Opening("sqlite://", Held(holder, None))

    opened = opening.wait()  # starts it, as a poll stopped before its first request does

    assert (opened is None) == fail
    assert _OpensAs.seen == [early.OPENING_SWITCH_INTERVAL_S]
    assert sys.getswitchinterval() == before  # given back, opened or not
