"""A busy week written straight into a database, for the preview and send benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from digest.models import Feed, Post
from digest.storage import Database

END = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)  # the week's send time
WORDS = [
    "kernel", "memory", "cache", "flamegraph", "query", "snapshot", "embedding", "training",
    "consensus", "sampling", "attention", "log", "pipeline", "inference", "batch", "throughput",
    "tensor", "storage",
]  # fmt: skip


def fill_week(db: Database, blogs: int, posts: int) -> None:
    """``blogs`` feeds (odd ones ML, even ones Systems) with ``posts`` posts each, all in the
    week ending at END, each with 120 words of text."""
    with db.session() as s:
        for b in range(blogs):
            feed = Feed(source_url=f"https://b{b}.example/feed", url=f"https://b{b}.example/feed",
                        title=f"Blog {b}", site_url=f"https://b{b}.example/",
                        section="ml" if b % 2 else "systems", active=True,
                        added_at=END - timedelta(days=60), status="ok", error_count=0,
                        polled_once=True)  # fmt: skip
            s.add(feed)
            s.flush()
            s.add_all(
                Post(
                    feed_id=feed.id,
                    key=f"{b}-{k}",
                    title=f"Post {k} of blog {b}",
                    link=f"https://b{b}.example/p/{k}",
                    canonical_url=f"https://b{b}.example/p/{k}",
                    author=f"Author {b}",
                    date=END - timedelta(hours=k * 7 + b % 5),
                    first_seen=END - timedelta(days=1),
                    from_first_poll=False,
                    text=" ".join(WORDS[(b + k + i) % len(WORDS)] for i in range(120)),
                    words=900,
                    content_hash=f"{b}-{k}",
                )  # fmt: skip
                for k in range(posts)
            )


def fill_years(db: Database, years: int, per_week: int = 4) -> int:
    """``years`` of history before the week for every blog fill_week made: ``per_week`` posts
    a week each, dated back from a week before END, each linking to the next blog's (planning
    reads them as each blog's history and for the links between blogs). Returns the posts
    added. ANALYZEs after: a database that has lived that long has its statistics."""
    with db.session() as s:
        feeds = list(s.scalars(select(Feed.id).order_by(Feed.id)))
    rows = [
        {"feed_id": feed, "key": f"old-{feed}-{n}", "title": f"Old post {n}",
         "link": f"https://b{feed}.example/old/{n}", "canonical_url": f"https://b{feed}.example/old/{n}",
         "date": END - timedelta(days=8) - timedelta(hours=n * 168 // per_week),
         "first_seen": END - timedelta(days=8) - timedelta(hours=n * 168 // per_week),
         "from_first_poll": False, "text": "", "words": 900, "content_hash": f"old-{feed}-{n}",
         "links": f"https://b{(feed + 1) % len(feeds) + 1}.example/old/{n}"}
        for feed in feeds for n in range(years * 52 * per_week)
    ]  # fmt: skip
    for start in range(0, len(rows), 20_000):
        with db.session() as s:
            s.execute(insert(Post), rows[start : start + 20_000])
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return len(rows)
