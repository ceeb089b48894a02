"""What every command that reads the feed list pays first (feedlist/listsync.py): syncing the
database with feeds.opml when the file has not changed, against parsing the file and comparing
every feed, as a poll does. CPU time, in one run (the machine is shared).

    .venv/bin/python bench/listsync.py [FEEDS]

2026-12-06, 5,000 feeds: unchanged 1.3 ms CPU (read and hash the file, one meta row) against
85.3 ms for the parse and compare (0.015x); the first sync, 5,000 new feeds, 0.14 s.
"""

from __future__ import annotations

import resource
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from digest.feedlist.listsync import sync_feed_list
from digest.feedlist.opml import read_opml
from digest.ingest.feedsync import sync_feeds
from digest.storage import Database

ROUNDS = 5


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(feeds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="listsync-"))
    opml = folder / "feeds.opml"
    outlines = "".join(
        f'<outline type="rss" text="Blog {k}" xmlUrl="https://b{k}.example/feed" '
        f'htmlUrl="https://b{k}.example/"/>'
        for k in range(feeds)
    )
    opml.write_text(
        f'<opml version="2.0"><body><outline text="ML">{outlines}</outline></body></opml>'
    )
    db = Database(f"sqlite:///{folder / 'digest.db'}")
    now = datetime.now(UTC)
    began = cpu()
    sync_feed_list(db, opml, now)
    print(f"first sync, {feeds:,} new feeds: {cpu() - began:.3f} s CPU")
    unchanged, parsed = [], []
    for _ in range(ROUNDS):
        began = cpu()
        sync_feed_list(db, opml, now)
        unchanged.append(cpu() - began)
        began = cpu()
        sync_feeds(db, read_opml(opml), now)
        parsed.append(cpu() - began)
    fast, slow = min(unchanged), min(parsed)
    print(f"unchanged file: {fast * 1000:.1f} ms CPU (best of {ROUNDS})")
    print(f"parse and compare every feed: {slow * 1000:.1f} ms CPU; ratio {fast / slow:.3f}x")
    db.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
