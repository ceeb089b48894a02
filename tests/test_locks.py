"""The daemon lock: one holder per database, a heartbeat, takeover of a dead holder's lock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from digest.errors import LockedError
from digest.locks import LOCK_KEY, DaemonLock, LockHolder, is_stale, known_dead, read_holder
from digest.storage import Database, utcnow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def holder(pid: int = 100, host: str = "here", age_s: float = 0, token: str = "t") -> LockHolder:
    beat = NOW - timedelta(seconds=age_s)
    return LockHolder(pid, host, beat, beat, token)


def stale(h: LockHolder | None, *, alive: bool = True, here: bool = False) -> bool:
    return is_stale(h, NOW, host="here", pid=42, pid_alive=alive, held_here=here)


def test_is_stale_rules() -> None:
    assert stale(None)  # an unreadable row
    assert not stale(holder())  # alive on our host
    assert stale(holder(), alive=False)  # its process is gone
    assert stale(holder(age_s=61))  # no heartbeat for a minute
    assert not stale(holder(host="other"), alive=False)  # can't see other hosts' pids
    assert stale(holder(host="other", age_s=61))
    # Our own pid: alive in this process, or a previous life of the pid (container restart).
    assert not stale(holder(pid=42), here=True)
    assert stale(holder(pid=42), here=False)


def test_a_holder_is_known_dead_only_on_this_host() -> None:
    """Its 'sending' rows go again at once only then; a stale heartbeat alone may be a frozen
    VM's or another host's run that wakes and finishes its message (deliverylog)."""

    def dead(h: LockHolder | None, *, alive: bool = True, here: bool = False) -> bool:
        return known_dead(h, host="here", pid=42, pid_alive=alive, held_here=here)

    assert dead(holder(), alive=False)  # its process is gone
    assert dead(holder(pid=42), here=False)  # a previous life of our pid
    assert not dead(holder(age_s=61))  # stale, but its pid runs (frozen? reused?)
    assert not dead(holder(host="other", age_s=61), alive=False)  # can't see other hosts
    assert not dead(holder(pid=42, age_s=61), here=True)  # another thread of ours
    assert not dead(None)  # an unreadable row says nothing


def test_second_lock_is_refused_naming_the_holder(db: Database) -> None:
    first = DaemonLock(db)
    first.acquire()
    with pytest.raises(LockedError) as e:
        DaemonLock(db).acquire()
    message = str(e.value)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "\n" not in message
    first.release()
    # Released: the next one gets it.
    second = DaemonLock(db)
    second.acquire()
    assert read_holder(db) is not None and read_holder(db).token == second.token  # type: ignore[union-attr]
    second.release()
    assert read_holder(db) is None


def test_dead_holder_is_taken_over(db: Database) -> None:
    # A process that existed and is gone: its pid is free.
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(proc.stdout)
    now = utcnow()
    db.set_meta(LOCK_KEY, LockHolder(dead_pid, socket.gethostname(), now, now, "old").to_json())
    lock = DaemonLock(db)
    lock.acquire()
    assert lock.held
    lock.release()


def test_stale_heartbeat_on_another_host_is_taken_over(db: Database) -> None:
    old = utcnow() - timedelta(minutes=5)
    db.set_meta(LOCK_KEY, LockHolder(1, "elsewhere", old, old, "old").to_json())
    DaemonLock(db).acquire()
    fresh = utcnow()
    db.set_meta(LOCK_KEY, LockHolder(1, "elsewhere", fresh, fresh, "new").to_json())
    with pytest.raises(LockedError, match="pid 1 on elsewhere"):
        DaemonLock(db).acquire()


def test_heartbeat_refreshes_and_notices_a_takeover(db: Database) -> None:
    lock = DaemonLock(db)
    lock.acquire()
    before = read_holder(db)
    assert before is not None
    assert lock.heartbeat()
    after = read_holder(db)
    assert after is not None and after.heartbeat >= before.heartbeat
    assert after.started == before.started
    # Someone else took the row (we were frozen past the stale limit).
    now = utcnow()
    db.set_meta(LOCK_KEY, LockHolder(1, "elsewhere", now, now, "theirs").to_json())
    assert not lock.heartbeat()
    assert not lock.held
    lock.release()  # not ours: left alone
    assert read_holder(db) is not None


def test_garbage_lock_row_is_taken_over(db: Database) -> None:
    db.set_meta(LOCK_KEY, "{not json")
    lock = DaemonLock(db)
    lock.acquire()
    assert lock.held


def test_racing_daemons_one_wins(db: Database) -> None:
    import threading

    locks = [DaemonLock(db) for _ in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(locks))

    def take(lock: DaemonLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except LockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]
