"""What a Prometheus scrape and `digest status` cost on a database with years of history.

Builds (once, with executemany: no SMTP) a database of ``--years`` weekly issues sent to
``--readers`` readers (a delivery row per reader per issue, ``--posts-per-week`` posts a week,
a few bounces and complaints), then times GET /metrics (through the web app, in process)
and `digest status`'s collect, median of ``--runs``; with ``--fold``, folds the delivery logs
older than delivery.keep_log (deleting their rows) and times each transaction.

    .venv/bin/python bench/scrape.py --db /tmp/five-years.db --years 5
    .venv/bin/python bench/scrape.py --url postgresql://postgres@127.0.0.1:5432/test --years 1

(bench/history.py builds the official five-year figures; this is the quick yardstick of
the counters /metrics reads.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

import digest
from digest.config import Settings
from digest.daemon.metrics import collect
from digest.daemon.status import collect_status
from digest.delivery.retention import fold_old_logs
from digest.models import BounceEvent, Delivery, Feed, Issue, Post, Subscriber
from digest.storage import Database
from digest.types import BounceKind, DeliveryStatus, IssueStatus, SubscriberStatus
from digest.web import make_app

BATCH = 20_000
BEFORE = (
    "SELECT status, count(*) FROM deliveries GROUP BY status",
    "SELECT max(sent_at) FROM deliveries",
    "SELECT count(*) FROM posts",
)
START = datetime(2021, 12, 4, 8, tzinfo=UTC)


def build(db: Database, readers: int, weeks: int, posts_per_week: int) -> None:
    """Readers, feeds, posts, issues, deliveries and bounces, as years of sending leave them."""
    with db.engine.begin() as conn:
        if conn.scalar(select(func.count()).select_from(Issue)):
            return
    html = "<p>" + "An item of the week. " * 4000 + "</p>"  # about 85 KB, as a real issue
    _insert(db, Feed.__table__, ({**_feed(i)} for i in range(200)))
    _insert(db, Subscriber.__table__, (_subscriber(i) for i in range(readers)))
    _insert(db, Issue.__table__, (_issue(n, html) for n in range(1, weeks + 1)))
    _insert(db, Post.__table__, (_post(i, posts_per_week) for i in range(weeks * posts_per_week)))
    _insert(db, Delivery.__table__, _deliveries(readers, weeks))
    _insert(db, BounceEvent.__table__, _bounces(readers, weeks))
    _count(db)


def _count(db: Database) -> None:
    """The counts of the rows inserted, by the statements migration 0011 fills them with."""
    path = Path(digest.__file__).parent / "migrations" / "versions" / "0011_counts.py"
    spec = importlib.util.spec_from_file_location("counts_migration", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM issue_counts"))
        conn.execute(text("DELETE FROM counts"))
        conn.execute(text(migration.FILL_ISSUE_COUNTS))
        for column, kind in (("hard", "hard"), ("soft", "soft"), ("complaints", "complaint")):
            conn.execute(text(migration.FILL_EVENTS.format(column=column, kind=kind)))
        conn.execute(text(migration.FILL_COUNTS))


def _insert(db: Database, table: object, rows: object) -> None:
    assert isinstance(table, Table)
    batch: list[dict[str, object]] = []
    for row in rows:  # type: ignore[attr-defined]
        batch.append(row)
        if len(batch) == BATCH:
            with db.engine.begin() as conn:
                conn.execute(insert(table), batch)
            batch = []
    if batch:
        with db.engine.begin() as conn:
            conn.execute(insert(table), batch)


def _feed(i: int) -> dict[str, object]:
    url = f"https://blog{i}.example.org/feed.xml"
    return {"id": i + 1, "source_url": url, "url": url, "added_at": START, "section": "ml"}


def _subscriber(i: int) -> dict[str, object]:
    status = SubscriberStatus.ACTIVE if i % 20 else SubscriberStatus.UNSUBSCRIBED
    return {
        "id": i + 1,
        "email": f"reader{i}@example.org",
        "status": status,
        "created_at": START,
        "hard_bounces": 0,
    }


def _issue(n: int, html: str) -> dict[str, object]:
    at = START + timedelta(weeks=n)
    return {
        "id": n,
        "number": n,
        "window_start": at - timedelta(weeks=1),
        "window_end": at,
        "created_at": at,
        "subject": f"Weekend Reading #{n}",
        "html": html,
        "text": "text",
        "post_count": 40,
        "status": IssueStatus.SENT,
    }


def _post(i: int, per_week: int) -> dict[str, object]:
    at = START + timedelta(weeks=i // per_week, minutes=i % per_week)
    return {
        "feed_id": i % 200 + 1,
        "key": f"post-{i}",
        "title": f"Post {i}",
        "link": f"https://blog{i % 200}.example.org/{i}",
        "date": at,
        "first_seen": at,
        "text": "words " * 50,
        "content_hash": f"{i:064x}",
        "issue_id": i // per_week + 1,
    }


def _deliveries(readers: int, weeks: int) -> object:
    for n in range(1, weeks + 1):
        at = START + timedelta(weeks=n)
        for r in range(readers):
            failed = r % 500 == 7
            yield {
                "issue_id": n,
                "subscriber_id": r + 1,
                "status": DeliveryStatus.FAILED if failed else DeliveryStatus.SENT,
                "attempts": 1,
                "message_id": f"<{n}.{r}@example.org>",
                "updated_at": at,
                "sent_at": None if failed else at,
            }


def _bounces(readers: int, weeks: int) -> object:
    for n in range(1, weeks + 1):
        for r in range(0, readers, 400):
            kind = BounceKind.COMPLAINT if r % 1200 == 0 else BounceKind.HARD
            yield {
                "at": START + timedelta(weeks=n, hours=1),
                "subscriber_id": r + 1,
                "issue_id": n,
                "kind": kind,
                "source": "imap",
                "source_id": f"{n}-{r}",
                "diagnostic": "",
            }


def timed(run: object, runs: int) -> str:
    """The median of ``runs`` calls, in ms, and of this process's CPU time for each (what a
    busy machine does not inflate: the database's own work is not in it on PostgreSQL)."""
    took, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        run()  # type: ignore[operator]
        took.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return f"{statistics.median(took):.1f} ms, CPU {statistics.median(cpu):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="SQLite file (built when missing)")
    parser.add_argument("--url", help="a database URL instead (its tables are replaced)")
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--posts-per-week", type=int, default=300)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--fold", action="store_true", help="then fold the logs past keep_log (changes the db)"
    )
    args = parser.parse_args()
    url = args.url or f"sqlite:///{args.db}"
    db = Database(url)
    weeks = 52 * args.years
    started = time.monotonic()
    build(db, args.readers, weeks, args.posts_per_week)
    with db.engine.connect() as conn:
        rows = conn.scalar(text("SELECT count(*) FROM deliveries"))
    print(f"database: {weeks} issues, {args.readers} readers, {rows} delivery rows")
    print(f"  (built or found in {time.monotonic() - started:.1f} s)")
    settings = Settings()
    client = TestClient(make_app(db, settings))
    now = datetime.now(UTC)

    def scrape() -> None:
        assert client.get("/metrics").status_code == 200

    print(f"GET /metrics: {timed(scrape, args.runs)} (median of {args.runs})")

    def aggregates() -> None:  # what /metrics counted over the log before the counts (0011)
        with db.engine.connect() as conn:
            for query in BEFORE:
                conn.execute(text(query)).all()

    print(f"  the log's aggregates it ran before: {timed(aggregates, 3)} (median of 3)")
    status = timed(lambda: collect_status(db, settings, now), args.runs)
    print(f"digest status (collect): {status} (median of {args.runs})")
    if args.fold:
        fold(db, now)
    db.dispose()


def fold(db: Database, now: datetime) -> None:
    """Fold every issue older than delivery.keep_log (180 days), timing each transaction;
    /metrics must say the same after."""
    before = scraped(db, now)
    real, took = db.session, []

    @contextlib.contextmanager
    def timed_session() -> Iterator[Session]:
        started = time.perf_counter()
        with real() as s:
            yield s
        took.append((time.perf_counter() - started) * 1000)

    db.session = timed_session  # type: ignore[method-assign]
    started = time.perf_counter()
    folded = fold_old_logs(db, now, Settings().delivery.keep_log)
    seconds = time.perf_counter() - started
    db.session = real  # type: ignore[method-assign]
    print(
        f"fold: {len(folded.issues)} issues, {folded.rows} rows in {seconds:.1f} s, "
        f"{len(took)} transactions: median {statistics.median(took):.1f} ms, "
        f"longest {max(took):.1f} ms; /metrics unchanged: {scraped(db, now) == before}"
    )


def scraped(db: Database, now: datetime) -> dict[tuple[str, object], float]:
    return {
        (m.name, labels): value
        for m in collect(db, now)
        if m.name != "digest_daemon_heartbeat_age_seconds"
        for labels, value in m.values.items()
    }


if __name__ == "__main__":
    main()
