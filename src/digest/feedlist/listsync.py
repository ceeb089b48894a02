"""The database follows the feed list: what every command that reads the feeds (poll, preview,
send, feeds, status, picks) does first, so an edit of feeds.opml (a rule, a blog removed)
counts at once, not from the next poll. Cheap when nothing changed: the file's size and
modification time are compared with those stored at the last sync (a stat: the daemon asks
every 6-second tick); when they differ the file is read and hashed, and only a different hash
parses the XML and reads the feeds."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from digest.errors import ConfigError, StorageError
from digest.ingest.feedsync import SYNCED_LIST_KEY, sync_feeds
from digest.ingest.summary import SyncResult
from digest.metakeys import list_seen, synced_list
from digest.storage import Database


def sync_feed_list(db: Database, path: Path, now: datetime) -> SyncResult | None:
    """Make the feeds table follow the OPML file at ``path`` unless it follows this very file
    already; None when there is no such file (nothing to follow yet). A file that cannot be
    read or parsed is a ConfigError, and the database stays as it was."""
    try:
        seen = list_seen(path)
        synced_hash, synced_seen = synced_list(db.get_meta(SYNCED_LIST_KEY))
        if synced_seen == seen:
            return SyncResult()
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"feeds.opml: cannot read {path}: {e.strerror}") from e
    digest = hashlib.sha256(data).hexdigest()
    stamp = f"{digest} {seen}"
    if digest == synced_hash and _same_path(synced_seen, seen):
        db.set_meta(SYNCED_LIST_KEY, stamp)  # touched, not changed: a stat will do next time
        return SyncResult()
    from digest.feedlist.opml import parse_opml  # lxml: only for a changed file

    sources = parse_opml(data, origin=str(path))
    try:
        result = sync_feeds(db, sources, now)
    except StorageError as e:
        if not isinstance(e.__cause__, IntegrityError):
            raise
        result = sync_feeds(db, sources, now)  # a poll added the same new feed meanwhile
    db.set_meta(SYNCED_LIST_KEY, stamp)
    return result


def follow_feed_list(db: Database, path: Path, now: datetime) -> SyncResult:
    """sync_feed_list for a poll, which needs the file: a missing one is the ConfigError that
    says how to make it."""
    result = sync_feed_list(db, path, now)
    if result is None:
        from digest.feedlist.opml import read_opml

        read_opml(path)  # raises the ConfigError saying how to create it
        return SyncResult()  # created meanwhile: the next poll follows it
    return result


def _same_path(seen: str, other: str) -> bool:
    """Do two "size mtime path" records name the same file?"""
    return seen.split(" ", 2)[2:] == other.split(" ", 2)[2:]
