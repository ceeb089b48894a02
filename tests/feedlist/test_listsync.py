"""The feeds table follows feeds.opml at the cost of a stat while the file is unchanged
(issue 22: the daemon asked every 6-second tick, and re-read and re-synced the file each
time)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.feedlist import listsync
from digest.feedlist import opml as opml_module
from digest.ingest.feedsync import SYNCED_LIST_KEY
from digest.ingest.health import list_feeds
from digest.ingest.summary import SyncResult
from digest.storage import Database
from tests.poll_helpers import write_opml

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FEEDS = [("ML", "A", "https://a.example/feed"), ("Systems", "B", "https://b.example/feed")]


def refuse(*_args: object, **_kw: object) -> None:
    raise AssertionError("read or parsed although nothing changed")


def test_an_unchanged_list_costs_a_stat_a_touched_one_a_hash_a_changed_one_a_sync(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_opml(tmp_path / "feeds.opml", FEEDS)
    first = listsync.sync_feed_list(sqlite_db, path, NOW)
    assert first is not None and len(list_feeds(sqlite_db, NOW)) == 2

    with monkeypatch.context() as m:  # unchanged: neither read nor parsed
        m.setattr(Path, "read_bytes", refuse)
        m.setattr(opml_module, "parse_opml", refuse)
        assert listsync.sync_feed_list(sqlite_db, path, NOW) == SyncResult()

    stat = path.stat()  # touched, same bytes: read and hashed, not parsed; then a stat again
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with monkeypatch.context() as m:
        m.setattr(opml_module, "parse_opml", refuse)
        assert listsync.sync_feed_list(sqlite_db, path, NOW) == SyncResult()
        m.setattr(Path, "read_bytes", refuse)
        assert listsync.sync_feed_list(sqlite_db, path, NOW) == SyncResult()

    write_opml(path, FEEDS[:1])  # changed: synced, B made inactive
    listsync.sync_feed_list(sqlite_db, path, NOW)
    active = [f.title for f in list_feeds(sqlite_db, NOW) if f.active]
    assert active == ["A"]
    stamp = sqlite_db.get_meta(SYNCED_LIST_KEY)
    assert stamp is not None and stamp.endswith(str(path.absolute()))
