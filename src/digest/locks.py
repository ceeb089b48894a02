"""One holder at a time per database: a lock row in `meta` with a heartbeat, taken over when
its holder is dead (its pid gone, on this host) or stale (no heartbeat for a minute).

Three locks: the daemon's (one `digest run` per database), the sender's (one send at a
time, the daemon's or `digest send`, so a live run's rows are never taken for a crash's) and
the poller's (one poll at a time, so two never store the same feed at once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, delete, insert, select, update

from digest.errors import DigestError, LockedError, StorageError
from digest.lockholder import Held as Held
from digest.lockholder import LockHolder as LockHolder
from digest.lockholder import StopOrLost as StopOrLost
from digest.lockholder import forget_token, held_here, hold_token, new_token
from digest.metakeys import DAEMON as DAEMON
from digest.metakeys import POLLER as POLLER
from digest.metakeys import SENDER as SENDER
from digest.metakeys import lock_key
from digest.processes import pid_alive
from digest.storage import Database, safe_url, utcnow
from digest.tables import META

log = logging.getLogger(__name__)

# name -> what holds it, as messages say it.
WHAT = {DAEMON: "digest daemon", SENDER: "send", POLLER: "poll"}
LOCK_KEY = lock_key(DAEMON)  # the daemon's row
WAIT_EVERY = 1.0  # seconds between tries of a lock that is waited for
HEARTBEAT_EVERY = timedelta(seconds=10)
# A holder whose heartbeat is this old is presumed dead (another host, a frozen VM); on our
# own host a dead pid is noticed at once.
STALE_AFTER = timedelta(seconds=60)


def is_stale(
    holder: LockHolder | None,
    now: datetime,
    *,
    host: str,
    pid: int,
    pid_alive: bool,
    held_here: bool,
    stale_after: timedelta = STALE_AFTER,
) -> bool:
    """May the lock be taken over? Unreadable, heartbeat too old, or its process is gone.

    ``pid_alive`` tells whether ``holder.pid`` runs on this host; ``held_here`` whether this
    process holds ``holder.token``. Our own pid without our token is a previous life.
    """
    if holder is None or now - holder.heartbeat > stale_after:
        return True
    return known_dead(holder, host=host, pid=pid, pid_alive=pid_alive, held_here=held_here)


def known_dead(
    holder: LockHolder | None, *, host: str, pid: int, pid_alive: bool, held_here: bool
) -> bool:
    """Is ``holder`` a process that is gone for sure? Only on this host: its pid no longer
    runs, or it is our pid without our token (a previous life). A stale heartbeat alone is not
    proof: another host's process, or a frozen VM's, may wake and finish what it had begun."""
    if holder is None or holder.host != host:
        return False
    if holder.pid == pid:
        return not held_here
    return not pid_alive


class DatabaseLock:
    """A named lock row of one database, as held (or wanted) by this process."""

    def __init__(
        self, db: Database, name: str = DAEMON, *, stale_after: timedelta = STALE_AFTER
    ) -> None:
        self.db = db
        self.name = name
        self.key = lock_key(name)
        self.stale_after = stale_after
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = new_token()
        self.held = False
        self.predecessor_dead = False  # acquire took the row of a process known to be gone

    def acquire(self) -> LockHolder:
        """Take the lock, or raise LockedError naming the process that holds it."""
        now = utcnow()
        me = LockHolder(self.pid, self.host, now, now, self.token)
        hold_token(self.token)  # before the row is written
        try:
            with self.db.begin() as conn:
                row = _lock_row(conn, self.key)
                if row is None:
                    conn.execute(
                        insert(META).values(key=self.key, value=me.to_json(), updated_at=now)
                    )
                else:
                    self._take_over(conn, row, me, now)
        except LockedError:
            self._forget()
            raise
        except StorageError:
            self._forget()
            # Another process inserted the row between our read and our insert (a unique key
            # violation); anything else is a real database error.
            holder = read_holder(self.db, self.name)
            if holder is None or holder.token == self.token:
                raise
            raise self._locked(holder) from None
        self.held = True
        return me

    def adopt(self, holder: LockHolder) -> None:
        """Hold the row this process wrote itself before the database layer had loaded
        (ingest/early.py: ``holder``, its token registered with hold_token); LockedError when
        the row is no longer that (taken over meanwhile: its heartbeat is checked from now)."""
        with self.db.begin() as conn:
            row = _lock_row(conn, self.key)
            stored = LockHolder.from_json(row.value) if row is not None else None
        if stored is None or stored.token != holder.token:
            forget_token(holder.token)
            if stored is None:
                raise LockedError(f"the {WHAT.get(self.name, self.name)} lock row was removed")
            raise self._locked(stored)
        self.pid, self.host, self.token = holder.pid, holder.host, holder.token
        self.held = True

    def _take_over(
        self, conn: Connection, row: Row[tuple[str]], me: LockHolder, now: datetime
    ) -> None:
        holder = LockHolder.from_json(row.value)
        alive = holder is not None and pid_alive(holder.pid)
        here = holder is not None and held_here(holder.token)
        stale = is_stale(
            holder,
            now,
            host=self.host,
            pid=self.pid,
            pid_alive=alive,
            held_here=here,
            stale_after=self.stale_after,
        )
        if not stale:
            assert holder is not None
            raise self._locked(holder)
        self.predecessor_dead = known_dead(
            holder, host=self.host, pid=self.pid, pid_alive=alive, held_here=here
        )
        if holder is not None:
            what = WHAT.get(self.name, self.name)
            log.warning("taking over the %s lock of a dead %s (%s)", what, what, holder.describe())
        _write_lock_row(conn, self.key, me, now)

    def _locked(self, holder: LockHolder) -> LockedError:
        what = WHAT.get(self.name, self.name)
        return LockedError(
            f"another {what} holds database {safe_url(self.db.url)}: {holder.describe()}"
        )

    def heartbeat(self) -> bool:
        """Refresh our heartbeat; False when the lock is no longer ours (taken over)."""
        now = utcnow()
        with self.db.begin() as conn:
            row = _lock_row(conn, self.key)
            holder = LockHolder.from_json(row.value) if row else None
            if row is None or holder is None or holder.token != self.token:
                self._forget()
                return False
            fresh = LockHolder(holder.pid, holder.host, holder.started, now, holder.token)
            _write_lock_row(conn, self.key, fresh, now)
        return True

    def release(self) -> None:
        """Delete the lock row if it is still ours."""
        if not self.held:
            return
        with self.db.begin() as conn:
            row = _lock_row(conn, self.key)
            holder = LockHolder.from_json(row.value) if row else None
            if row is not None and holder is not None and holder.token == self.token:
                conn.execute(delete(META).where(META.c.key == self.key))
        self._forget()

    def _forget(self) -> None:
        self.held = False
        forget_token(self.token)


class DaemonLock(DatabaseLock):
    """One `digest run` per database."""

    def __init__(self, db: Database, *, stale_after: timedelta = STALE_AFTER) -> None:
        super().__init__(db, DAEMON, stale_after=stale_after)


@contextlib.contextmanager
def holding(
    db: Database,
    name: str,
    *,
    wait: bool = False,
    stop: threading.Event | None = None,
    adopt: Held | None = None,
) -> Iterator[Held]:
    """Hold lock ``name`` for the block, its heartbeat kept fresh by a thread; LockedError
    naming the holder when another process has it, unless ``wait``, which tries again every
    second (saying once, in the log, whom it waits for). The block checks the Held's
    ``stop``: ``stop`` given here, or the lock lost. ``adopt``: the lock is already held by
    this process, its row written without SQLAlchemy (DatabaseLock.adopt); this Held goes on."""
    lock = DatabaseLock(db, name)
    if adopt is not None:
        lock.adopt(adopt.holder)
        held = adopt
    else:
        held = Held(_acquire(lock, wait), stop, lock.predecessor_dead)
    end = threading.Event()
    beat = threading.Thread(target=_beat, args=(lock, end, held), name=f"digest-{name}-lock")
    beat.daemon = True
    beat.start()
    try:
        yield held
    finally:
        end.set()
        beat.join()
        lock.release()


def _acquire(lock: DatabaseLock, wait: bool) -> LockHolder:
    said = False
    while True:
        try:
            return lock.acquire()
        except LockedError as e:
            if not wait:
                raise
            if not said:
                log.warning("%s; waiting for it to end", e)
                said = True
        time.sleep(WAIT_EVERY)


def _beat(lock: DatabaseLock, end: threading.Event, held: Held) -> None:
    while not end.wait(HEARTBEAT_EVERY.total_seconds()):
        try:
            if not lock.heartbeat():
                _lost(lock, held)
                return
        except DigestError as e:
            log.warning("could not refresh the %s lock: %s", WHAT[lock.name], e)


def _lost(lock: DatabaseLock, held: Held) -> None:
    """Taken over (our heartbeat was late): stop the holder at once, saying who has it now."""
    what = WHAT[lock.name]
    try:
        now_held = read_holder(lock.db, lock.name)
    except DigestError:
        now_held = None
    by = f" by {now_held.describe()}" if now_held is not None else ""
    held.lose(f"the {what} lock was taken over{by}")
    log.error("the %s lock was taken over while held%s: stopping this %s", what, by, what)


def _lock_row(conn: Connection, key: str) -> Row[tuple[str]] | None:
    # FOR UPDATE serialises takeovers on PostgreSQL; SQLite's BEGIN IMMEDIATE already does.
    query = select(META.c.value).where(META.c.key == key).with_for_update()
    return conn.execute(query).one_or_none()


def _write_lock_row(conn: Connection, key: str, holder: LockHolder, now: datetime) -> None:
    values = {"value": holder.to_json(), "updated_at": now}
    conn.execute(update(META).where(META.c.key == key).values(values))


def read_holder(db: Database, name: str = DAEMON) -> LockHolder | None:
    """The holder of lock ``name`` as stored (possibly stale), or None."""
    value = db.get_meta(lock_key(name))
    return LockHolder.from_json(value) if value else None


def holder_alive(holder: LockHolder, now: datetime, stale_after: timedelta = STALE_AFTER) -> bool:
    """Whether the holder looks alive from here: a fresh heartbeat, and its pid if on our host."""
    if now - holder.heartbeat > stale_after:
        return False
    return holder.host != socket.gethostname() or pid_alive(holder.pid)


# The lock rows (meta keys) of the daemon, a send and a poll: a copy of a database leaves them out.
LOCK_KEYS = tuple(lock_key(name) for name in (DAEMON, SENDER, POLLER))


def refuse_if_held(db: Database, now: datetime, before: str) -> None:
    """LockedError when a live daemon, send or poll holds ``db``: stop it before ``before``
    (restoring into it, migrating it)."""
    for name in (DAEMON, SENDER, POLLER):
        holder = read_holder(db, name)
        if holder is not None and holder_alive(holder, now):
            raise LockedError(
                f"the {WHAT[name]} holds {safe_url(db.url)} ({holder.describe()}): stop it "
                f"before {before}"
            )
