"""A lock row's holder and the tokens this process holds, without SQLAlchemy: `digest poll`
takes the poll lock with the standard library's sqlite3 before the database layer has loaded
(ingest/early.py), and digest.locks adopts that row once it has."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime

# Tokens of the locks held by this process: a holder with our pid but a token not in here is a
# previous life of this pid (a container restarted after kill -9), not a live daemon.
_HELD_HERE: set[str] = set()
_HELD_LOCK = threading.Lock()
# How often a holder's stop looks at its caller's stop while it waits (a send's retry pause).
OUTER_CHECK_S = 0.1


def new_token() -> str:
    """A lock's token, 16 hex digits from os.urandom (as secrets.token_hex(8), without
    importing secrets, whose hmac and hashlib are 3.5 ms of a poll's start-up)."""
    return os.urandom(8).hex()


def hold_token(token: str) -> None:
    """Count ``token`` as held here: registered before its row is written, so that a lock
    taken by another thread of this process is never mistaken for a previous life of our pid."""
    with _HELD_LOCK:
        _HELD_HERE.add(token)


def forget_token(token: str) -> None:
    with _HELD_LOCK:
        _HELD_HERE.discard(token)


def held_here(token: str) -> bool:
    with _HELD_LOCK:
        return token in _HELD_HERE


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as stored in the lock row."""

    pid: int
    host: str
    started: datetime
    heartbeat: datetime
    token: str

    def describe(self) -> str:
        return (
            f"pid {self.pid} on {self.host}, running since {self.started:%Y-%m-%d %H:%M:%S} UTC, "
            f"last heartbeat {self.heartbeat:%H:%M:%S} UTC"
        )

    def to_json(self) -> str:
        data = asdict(self)
        data["started"] = self.started.isoformat()
        data["heartbeat"] = self.heartbeat.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> LockHolder | None:
        """None when the row is unreadable (then it counts as stale)."""
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                started=datetime.fromisoformat(data["started"]),
                heartbeat=datetime.fromisoformat(data["heartbeat"]),
                token=str(data.get("token", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


class StopOrLost(threading.Event):
    """What a lock's holder checks to know it must stop: set when the caller's ``outer`` stop
    is (a daemon stopping), or when the lock is found taken over (set by the heartbeat)."""

    def __init__(self, outer: threading.Event | None = None) -> None:
        super().__init__()
        self.outer = outer

    def is_set(self) -> bool:
        return super().is_set() or (self.outer is not None and self.outer.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        if self.outer is None:
            return super().wait(timeout)
        # Two events can't be waited for at once: look at the outer one every OUTER_CHECK_S.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = OUTER_CHECK_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return False
            super().wait(min(left, OUTER_CHECK_S))
        return True


class Held:
    """A lock held for a block (see locks.holding): ``stop`` is what the holder checks, set when
    its caller asks it to stop or the moment the heartbeat finds the lock taken over; ``lost``
    then says by whom. A holder that lost its lock starts nothing more (a send still writes
    down the message it had with the server: the newcomer left it alone). ``predecessor_dead``:
    the lock was taken over from a process known to be gone (its pid, on this host), so its
    unfinished work is a dead run's at once (a send's 'sending' rows go again); otherwise a
    previous holder may still live (a stale heartbeat: another host, a frozen VM)."""

    def __init__(
        self, holder: LockHolder, stop: threading.Event | None, predecessor_dead: bool = False
    ) -> None:
        self.holder = holder
        self.stop = StopOrLost(stop)
        self.lost: str | None = None
        self.predecessor_dead = predecessor_dead

    def lose(self, why: str) -> None:
        self.lost = why
        self.stop.set()
