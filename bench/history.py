"""Is year five as cheap as week one? Builds years of history with digest's own schema, then
times the operations whose cost grew with it (issue 22).

    .venv/bin/python bench/history.py [--years 5] [--readers 10000] [--stale 1000]
                                      [--database-url URL] [--repeat 7]

Builds, in a temporary SQLite file (or a schema of its own in the PostgreSQL database of
``--database-url``, dropped after), ``--years`` of weekly issues (52 a year, each sent to every
reader: 260 issues and 2.6M delivery rows at the defaults), ``--readers`` active readers with
their sign-up events, a bounce per 200 deliveries, two weeks of fetch history for 50 feeds, 30
posts an issue, and ``--stale`` sign-ups left unconfirmed for 8 days. Rows go in with
executemany (SQLite) or COPY (PostgreSQL), not through SMTP: a minute or two for 2.6M rows.
The schema is the one the code on the import path migrates to: run it with
``PYTHONPATH=/other/checkout/src`` to measure another version (it prints which it ran).

Then prints, for that database:

- prune: ``prune_unconfirmed`` of the stale sign-ups (what the daemon runs hourly): the
  time in all and the longest transaction it took;
- ``GET /metrics``, ``GET /feed.xml`` and ``GET /feed.xml`` answered 304 (If-None-Match), each
  the median of ``--repeat``, from a real ``digest serve`` process over HTTP;
- a page (``GET /issues/N``, the latest) read while a writer commits poll-sized transactions
  back to back (200 fetch rows and 50 feed updates each): p95 of 50 reads; and the same read
  behind one write transaction held for 1 s (the longest it waited);
- ``digest status --json`` as a real process (median of 3, start-up included);
- an SES webhook's lookup of its delivery by Message-ID (median of ``--repeat``).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if not os.environ.get("PYTHONPATH"):  # else: the version of digest to measure
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import httpx

import digest
from digest.storage import Database

FEEDS = 50
POSTS_PER_ISSUE = 30
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Built:
    issues: int
    readers: int
    deliveries: int
    stale: int
    seconds: float


# --- building ----------------------------------------------------------------------------


def stamp(at: datetime, sqlite: bool) -> Any:
    """A time as SQLAlchemy stores it: SQLite's naive UTC text, PostgreSQL's aware value."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at


class Loader:
    """Rows straight into the tables through the DBAPI connection: executemany on SQLite,
    COPY on PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.sqlite = db.is_sqlite
        self.raw: Any = db.engine.raw_connection()
        self.cur = self.raw.cursor()
        if self.sqlite:
            # Building only: a large page cache for the indexes' random inserts (message_id),
            # no fsync. The connection goes back to the pool with its settings reset.
            self.cur.execute("PRAGMA cache_size=-262144")
            self.cur.execute("PRAGMA synchronous=OFF")
            self.cur.execute("BEGIN")

    def rows(self, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
        names = ", ".join(columns)
        if self.sqlite:
            marks = ", ".join("?" * len(columns))
            self.cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            return
        with self.cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def commit(self) -> None:
        if self.sqlite:
            self.cur.execute("COMMIT")
            self.cur.execute("BEGIN")
        else:
            self.raw.commit()

    def close(self) -> None:
        self.commit()
        if self.sqlite:
            self.cur.execute("COMMIT")
            self.cur.execute("PRAGMA cache_size=-2000")
            self.cur.execute("PRAGMA synchronous=NORMAL")
        self.raw.close()


def issue_html(number: int) -> str:
    items = "".join(
        f"<h3><a href='https://blog{k % FEEDS}.example/{number}/{k}'>Post {k} of week "
        f"{number}</a></h3><p>{'A paragraph about systems and learning. ' * 8}</p>"
        for k in range(POSTS_PER_ISSUE)
    )
    return f"<html><body><h1>Weekend Reading #{number}</h1>{items}</body></html>"


def build(db: Database, years: int, readers: int, stale: int, now: datetime) -> Built:
    started = time.monotonic()
    sql = db.is_sqlite
    load = Loader(db)
    t = lambda at: stamp(at, sql)  # noqa: E731
    weeks = 52 * years
    first = now - weeks * WEEK
    load.rows("feeds", ["id", "source_url", "url", "title", "section", "active", "added_at",
                        "status", "error_count", "polled_once"],
              ((f, f"https://blog{f}.example/feed", f"https://blog{f}.example/feed",
                f"Blog {f}", "ml" if f % 2 else "systems", True, t(first), "ok", 0, True)
               for f in range(1, FEEDS + 1)))  # fmt: skip
    load.rows("issues", ["id", "number", "window_start", "window_end", "created_at", "subject",
                         "html", "text", "post_count", "status"],
              ((n, n, t(first + (n - 1) * WEEK), t(first + n * WEEK), t(first + n * WEEK),
                f"Weekend Reading #{n}", issue_html(n), "text", POSTS_PER_ISSUE, "sent")
               for n in range(1, weeks + 1)))  # fmt: skip
    load.rows("posts", ["feed_id", "key", "title", "link", "canonical_url", "date",
                        "first_seen", "from_first_poll", "text", "words", "teaser",
                        "content_hash", "issue_id"],
              ((k % FEEDS + 1, f"{n}/{k}", f"Post {k} of week {n}",
                f"https://blog{k % FEEDS}.example/{n}/{k}",
                f"https://blog{k % FEEDS}.example/{n}/{k}", t(first + n * WEEK - WEEK / 2),
                t(first + n * WEEK - WEEK / 2), False, "words " * 100, 100, False,
                uuid.uuid4().hex, n)
               for n in range(1, weeks + 1) for k in range(POSTS_PER_ISSUE)))  # fmt: skip
    load.rows("fetches", ["feed_id", "at", "url", "status_code", "outcome", "new_posts",
                          "updated_posts", "bytes", "elapsed_ms"],
              ((f, t(now - timedelta(hours=h)), f"https://blog{f}.example/feed", 304,
                "not_modified", 0, 0, 0, 40)
               for h in range(14 * 24) for f in range(1, FEEDS + 1)))  # fmt: skip
    joined = first - WEEK
    load.rows("subscribers", ["id", "email", "status", "created_at", "hard_bounces", "source",
                              "confirmed_at"],
              ((i, f"reader{i}@example.com", "active", t(joined), 0, "web", t(joined))
               for i in range(1, readers + 1)))  # fmt: skip
    signed = now - timedelta(days=8)
    load.rows("subscribers", ["id", "email", "status", "created_at", "hard_bounces", "source"],
              ((i, f"stale{i}@example.com", "pending", t(signed), 0, "web")
               for i in range(readers + 1, readers + stale + 1)))  # fmt: skip
    load.rows("subscriber_events", ["subscriber_id", "at", "kind", "detail"],
              ((i, t(joined if i <= readers else signed), kind, None)
               for i in range(1, readers + stale + 1)
               for kind in ("signed_up", "confirm_sent")))  # fmt: skip
    load.commit()
    rng = random.Random(1)
    for n in range(1, weeks + 1):
        at = t(first + n * WEEK)
        load.rows("deliveries", ["issue_id", "subscriber_id", "status", "attempts",
                                 "message_id", "updated_at", "sent_at"],
                  ((n, i, "sent", 1, f"<{n}.{i}.{rng.getrandbits(48):x}@digest.example>", at, at)
                   for i in range(1, readers + 1)))  # fmt: skip
        load.rows("bounce_events", ["at", "subscriber_id", "issue_id", "kind", "source",
                                    "source_id", "status_code", "diagnostic"],
                  ((at, i, n, "soft", "imap", uuid.uuid4().hex, "4.2.2", "mailbox full")
                   for i in range(n % 200 + 1, readers + 1, 200)))  # fmt: skip
        load.commit()
    load.close()
    if not sql:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")  # what autovacuum does on a database in use
            conn.commit()
    return Built(weeks, readers, weeks * readers, stale, time.monotonic() - started)


# --- measuring ---------------------------------------------------------------------------


def longest_transaction(db: Database) -> Callable[[], float]:
    """From now on, the longest transaction on ``db``'s engine, in seconds (a function)."""
    from sqlalchemy import event

    longest = [0.0]

    def begun(conn: Any) -> None:
        conn.info["began"] = time.monotonic()

    def ended(conn: Any) -> None:
        longest[0] = max(longest[0], time.monotonic() - conn.info.pop("began", time.monotonic()))

    event.listen(db.engine, "begin", begun)
    event.listen(db.engine, "commit", ended)
    event.listen(db.engine, "rollback", ended)
    return lambda: longest[0]


def prune(db: Database, now: datetime) -> dict[str, float]:
    from digest.delivery.consent import prune_unconfirmed

    longest = longest_transaction(db)
    started = time.monotonic()
    deleted = prune_unconfirmed(db, now)
    return {"deleted": deleted, "s": time.monotonic() - started, "longest_s": longest()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(url: str, folder: Path) -> Iterator[str]:
    """A real `digest serve` on the database; its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DIGEST_DATABASE_URL": url, "DIGEST_WEB_PORT": str(port),
           "DIGEST_NEWSLETTER_BASE_URL": base}  # fmt: skip
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "digest", "serve"], env=env, cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit("digest serve died:\n" + (folder / "serve.log").read_text())
            with contextlib.suppress(httpx.TransportError):
                httpx.get(base + "/healthz", timeout=5)
                break
            if time.monotonic() > deadline:
                raise SystemExit("digest serve did not answer in 120 s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def timed_get(client: httpx.Client, url: str, **headers: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = client.get(url, headers=headers)
    return (time.monotonic() - started) * 1000, response


def median_ms(times: list[float]) -> float:
    return statistics.median(times)


def web(base: str, repeat: int, db: Database, latest: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with httpx.Client(timeout=120) as client:
        client.get(base + "/metrics")  # warm: templates, first connections
        out["metrics_ms"] = median_ms(
            [timed_get(client, base + "/metrics")[0] for _ in range(repeat)]
        )
        feeds = [timed_get(client, base + "/feed.xml") for _ in range(repeat)]
        out["feed_ms"] = median_ms([ms for ms, _r in feeds])
        etag = feeds[-1][1].headers.get("etag")
        if etag:
            again = [
                timed_get(client, base + "/feed.xml", **{"If-None-Match": etag})
                for _ in range(repeat)
            ]
            out["feed_304_ms"] = median_ms([ms for ms, _r in again])
            out["feed_304_status"] = again[-1][1].status_code
        out.update(read_during_writes(client, base + f"/issues/{latest}", db))
    return out


def read_during_writes(client: httpx.Client, page: str, db: Database) -> dict[str, float]:
    """p95 of 50 page reads while a writer commits poll-sized transactions back to back; then
    one read behind a write transaction held for a second."""
    from sqlalchemy import text

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    commits = ctx.Value("i", 0)
    client.get(page)
    # In a process of its own, as the poller is: a thread here would time its GIL, not the page.
    process = ctx.Process(target=poll_writes, args=(db.url, stop, commits))
    process.start()
    try:
        while commits.value < 3 and process.is_alive():  # the writer is under way
            time.sleep(0.01)
        reads = sorted(timed_get(client, page)[0] for _ in range(50))
    finally:
        stop.set()
        process.join()
    out = {"page_p95_ms": reads[int(0.95 * len(reads)) - 1], "page_median_ms": median_ms(reads),
           "writer_commits": commits.value}  # fmt: skip
    held = threading.Event()
    release = threading.Event()

    def long_writer() -> None:
        with db.engine.connect() as conn, conn.begin():
            conn.execute(text("UPDATE feeds SET error_count = 0 WHERE id = 1"))
            held.set()
            release.wait(1.0)

    thread = threading.Thread(target=long_writer, daemon=True)
    thread.start()
    held.wait()
    out["page_behind_1s_writer_ms"] = timed_get(client, page)[0]
    release.set()
    thread.join()
    return out


def poll_writes(url: str, stop: Any, commits: Any) -> None:
    """Child process: poll-sized write transactions (200 fetch rows, 50 feed updates) back to
    back until ``stop``; counts them in ``commits``."""
    from sqlalchemy import text

    db = Database(url, migrate=False)
    now = stamp(datetime.now(UTC), db.is_sqlite)
    rows = [{"f": f % FEEDS + 1, "at": now} for f in range(200)]
    with db.engine.connect() as conn:
        while not stop.is_set():
            with conn.begin():
                conn.execute(text(
                    "INSERT INTO fetches (feed_id, at, url, status_code, outcome, new_posts,"
                    " updated_posts, bytes, elapsed_ms) VALUES (:f, :at, 'u', 304,"
                    " 'not_modified', 0, 0, 0, 40)"), rows)  # fmt: skip
                for f in range(1, FEEDS + 1):
                    conn.execute(text("UPDATE feeds SET error_count = 0 WHERE id = :f"), {"f": f})
            with commits.get_lock():
                commits.value += 1
    db.dispose()


def status_ms(url: str, folder: Path) -> float:
    env = {**os.environ, "DIGEST_DATABASE_URL": url}
    times = []
    for _ in range(3):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "digest", "status", "--json"], env=env,
                              cwd=folder, capture_output=True, text=True)  # fmt: skip
        times.append((time.monotonic() - started) * 1000)
        if done.returncode:
            raise SystemExit(f"digest status failed: {done.stderr}")
    return median_ms(times)


def status_in_process_ms(db: Database, repeat: int) -> float:
    """`digest status`'s queries alone (collect_status), without the process's start-up."""
    from digest.config import Settings
    from digest.daemon.status import collect_status

    times = []
    for _ in range(repeat):
        started = time.monotonic()
        with Database.read_only() if hasattr(Database, "read_only") else contextlib.nullcontext():
            collect_status(db, Settings(), datetime.now(UTC))
        times.append((time.monotonic() - started) * 1000)
    return median_ms(times)


def webhook_lookup_ms(db: Database, repeat: int, issues: int, readers: int) -> float:
    """The SES webhook's first step: whom a Message-ID went to (bounces.apply)."""
    from digest.bounces import apply
    from digest.types import BounceKind, BounceReport

    with db.session() as s:
        from sqlalchemy import text

        message_id = s.execute(
            text("SELECT message_id FROM deliveries WHERE issue_id = :i AND subscriber_id = :s"),
            {"i": issues // 2 + 1, "s": readers // 2 + 1},
        ).scalar_one()
    report = BounceReport(kind=BounceKind.HARD, note="5.1.1", message_id=message_id)
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        assert apply._by_message_id(db, report)
        times.append((time.monotonic() - started) * 1000)
    return median_ms(times)


# --- the run -----------------------------------------------------------------------------


@contextlib.contextmanager
def database(url: str | None, folder: Path) -> Iterator[str]:
    """The URL to build in: a new SQLite file, or a new schema in the PostgreSQL database."""
    if url is None or url.startswith("sqlite"):
        yield url or f"sqlite:///{folder / 'digest.db'}"
        return
    from sqlalchemy import create_engine

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    schema = f"bench_history_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--stale", type=int, default=1_000)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"digest from {Path(digest.__file__).parent}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp, database(args.database_url, Path(tmp)) as url:
        folder = Path(tmp)
        now = datetime.now(UTC)
        db = Database(url)
        built = build(db, args.years, args.readers, args.stale, now)
        print(f"{db.engine.dialect.name}: {args.years} years, {built.issues} issues, "
              f"{built.readers:,} readers, {built.deliveries:,} deliveries, {built.stale:,} "
              f"stale sign-ups; built in {built.seconds:.1f} s")  # fmt: skip
        results: dict[str, Any] = {}
        results["prune"] = prune(db, now)
        results["webhook_lookup_ms"] = webhook_lookup_ms(
            db, args.repeat, built.issues, args.readers
        )
        with serving(url, folder) as base:
            results.update(web(base, args.repeat, db, built.issues))
        results["status_ms"] = status_ms(url, folder)
        results["status_queries_ms"] = status_in_process_ms(db, args.repeat)
        db.dispose()
    report(results)
    print(f"load average {os.getloadavg()[0]:.1f}")


def report(r: dict[str, Any]) -> None:
    p = r["prune"]
    lines = [
        ("prune of stale sign-ups", f"{p['s']:.2f} s ({p['deleted']:.0f} deleted), "
                                    f"longest transaction {p['longest_s']:.2f} s"),
        ("GET /metrics (median)", f"{r['metrics_ms']:.1f} ms"),
        ("GET /feed.xml (median)", f"{r['feed_ms']:.1f} ms"),
        ("GET /feed.xml 304 (median)", f"{r['feed_304_ms']:.1f} ms (status {r['feed_304_status']})"
         if "feed_304_ms" in r else "no ETag"),
        ("page read during a poll's writes", f"p95 {r['page_p95_ms']:.1f} ms, median "
                                             f"{r['page_median_ms']:.1f} ms "
                                             f"({r['writer_commits']} writer commits)"),
        ("page read behind a 1 s write transaction", f"{r['page_behind_1s_writer_ms']:.0f} ms"),
        ("digest status (process, median of 3)", f"{r['status_ms']:.0f} ms"),
        ("digest status's queries (in process, median)", f"{r['status_queries_ms']:.1f} ms"),
        ("SES webhook lookup by Message-ID (median)", f"{r['webhook_lookup_ms']:.2f} ms"),
    ]  # fmt: skip
    for name, value in lines:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
