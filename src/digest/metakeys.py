"""The meta table's rows that several modules read, each named once. Standard library only:
a poll with nothing to do reads them without loading SQLAlchemy (ingest/idle.py)."""

from __future__ import annotations

from pathlib import Path

# Which feed list (its hash, size, mtime and path) the feeds table follows; a sync that
# changes anything clears it, so a poll of another file is never taken for this one's
# (feedlist/listsync.py sets it after syncing).
SYNCED_LIST = "feed_list_synced"
LAST_POLL = "last_poll"  # the last poll's record (ingest/tally.py)
FETCH_TOTALS = "fetch_totals"  # requests for feeds ever made, by outcome (ingest/tally.py)
FETCHES_PRUNED = "fetches_pruned_at"  # when Fetch rows were last pruned (ingest/feedstore.py)

# The locks' names (digest.locks), as messages and the lock rows say them.
DAEMON, SENDER, POLLER = "daemon", "send", "poll"


def lock_key(name: str) -> str:
    """The meta row of lock ``name`` (digest.locks)."""
    return f"{name}_lock"


def list_seen(path: Path) -> str:
    """The feed list file as the SYNCED_LIST row names it: size, modification time and path
    (a stat; OSError when there is no such file)."""
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns} {path.absolute()}"


def synced_list(value: str | None) -> tuple[str, str]:
    """The SYNCED_LIST row's value split: the file's hash, and list_seen of it then."""
    digest, _, seen = (value or "").partition(" ")
    return digest, seen
