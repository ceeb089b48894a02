"""The hot queries use an index (issue 22), on both databases: so the next query added cannot
make a routine operation cost more in year five than in week one without a test saying so.

The statements are the ones the code issues, captured (SQLAlchemy's before_cursor_execute)
while the real functions run: a send's claims and counts, a bounce webhook's lookups, `digest
status`, the prunes, `digest forget` and `export`. Each is explained with its own parameters
(SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN with sequential scans priced out, as on tables
this small it would rightly prefer them), and no table that grows with history may be read
whole: SQLite must SEARCH it, PostgreSQL must reach it through an index condition. Every foreign
key is checked the same way: a delete cascades through it (neither database indexes one by
itself; 1,000 stale sign-ups took 394.6 s to prune at 2.6M deliveries without it).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select

from digest.bounces.apply import apply_report
from digest.config import Settings
from digest.daemon.status import collect_status
from digest.delivery import deliverylog
from digest.delivery.consent import export, forget, prune_unconfirmed, sign_up
from digest.delivery.subscribers import add_subscriber
from digest.ingest.feedstore import PostWrites, merge_posts, prune_fetches
from digest.issue.plan import plan_issue
from digest.models import Base, Delivery, Feed, Fetch, Issue, Post
from digest.storage import Database
from digest.types import BounceKind, BounceReport, DeliveryStatus, FetchOutcome, PostRow
from tests.issue_helpers import add_feed, add_post

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)

# The tables that grow with every week of history: never read whole by a routine operation.
# (issues grows by 52 rows a year, and its reads are by number, newest first, with a LIMIT.)
HISTORY = {"deliveries", "fetches", "subscriber_events", "bounce_events", "posts"}


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: Any


def captured(db: Database, run: Callable[[], object]) -> list[Statement]:
    """The SELECT, UPDATE and DELETE statements ``run`` issues on ``db``."""
    seen: list[Statement] = []

    def note(_conn: Any, _cursor: Any, sql: str, parameters: Any, _ctx: Any, many: bool) -> None:
        if sql.lstrip().split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            seen.append(Statement(sql, parameters[0] if many else parameters))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    return seen


def full_reads(db: Database, statement: Statement) -> list[str]:
    """How ``statement`` reads a history table whole (empty: it doesn't), as its plan says."""
    with db.engine.connect() as conn:
        if db.is_sqlite:
            rows = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement.sql, statement.parameters
            ).all()
            return [
                detail
                for *_ids, detail in rows
                if detail.startswith("SCAN ") and detail.split()[1] in HISTORY
            ]
        leading: dict[str, str] = {str(i): str(c) for i, c in conn.exec_driver_sql(LEADING_COLUMNS)}
        return [
            f"{node['Node Type']} on {node['Relation Name']} {node.get('Index Cond', '')}"
            for node in _pg_plan(conn, statement, "FORMAT JSON")
            if node.get("Relation Name") in HISTORY and not _searched(node, leading)
        ]


def _pg_plan(conn: Connection, statement: Statement, options: str) -> Iterator[dict[str, Any]]:
    """The nodes of PostgreSQL's plan of ``statement`` (EXPLAIN with ``options``), sequential
    scans priced out: on tables this small it would rightly prefer them."""
    conn.exec_driver_sql("SET enable_seqscan = off")
    [[plan]] = conn.exec_driver_sql(
        f"EXPLAIN ({options}) " + statement.sql, statement.parameters
    ).all()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return _nodes(plan[0]["Plan"])


# PostgreSQL: each index of this schema and its first column or expression (an index scan
# whose condition is on a later column reads the whole index).
LEADING_COLUMNS = """
SELECT i.relname, pg_get_indexdef(x.indexrelid, 1, true) FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
WHERE i.relnamespace = current_schema()::regnamespace
"""


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _searched(node: dict[str, Any], leading: dict[str, str]) -> bool:
    """A scan that reaches its rows through a condition on its index's first column."""
    kind = node["Node Type"]
    if kind == "ModifyTable":
        return True
    if kind == "Bitmap Heap Scan":
        return all(_searched(child, leading) for child in node["Plans"])
    if kind not in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
        return False
    first = re.escape(leading[node["Index Name"]])
    condition = node.get("Index Cond", "")
    return re.search(rf"\({first}(?!\w)|\(\({first}\)", condition) is not None


def assert_searched(db: Database, statements: list[Statement]) -> None:
    assert statements, "nothing captured"
    bad = {s.sql: reads for s in statements if (reads := full_reads(db, s))}
    assert not bad, json.dumps(bad, indent=1)


@pytest.fixture
def history(db: Database) -> Database:
    """Three sent issues to twelve readers, a bounce, fetches, a stale sign-up."""
    week = timedelta(days=7)
    with db.session() as s:
        feed = Feed(source_url="https://a.example/feed", url="https://a.example/feed", added_at=T0)
        s.add(feed)
        s.flush()
        s.execute(insert(Fetch), [
            {"feed_id": feed.id, "at": T0 - timedelta(days=d), "url": feed.url,
             "outcome": FetchOutcome.NOT_MODIFIED} for d in range(0, 30, 3)
        ])  # fmt: skip
    readers = [add_subscriber(db, f"r{n}@example.com", now=T0 - 20 * week)[0].id for n in range(12)]
    sign_up(db, "stale@example.com", name=None, sections=None, now=T0 - 2 * week)
    with db.session() as s:
        for number in (1, 2, 3):
            at = T0 - (4 - number) * week
            issue = Issue(number=number, window_start=at - week, window_end=at, created_at=at,
                          subject=f"#{number}", html="<p>x</p>", text="x")  # fmt: skip
            s.add(issue)
            s.flush()
            s.execute(insert(Delivery), [
                {"issue_id": issue.id, "subscriber_id": r, "status": DeliveryStatus.SENT,
                 "attempts": 1, "updated_at": at, "sent_at": at,
                 "message_id": f"<{number}.{r}@example.org>"} for r in readers
            ])  # fmt: skip
    return db


def test_a_send_uses_indexes(history: Database) -> None:
    def send() -> None:
        with history.session() as s:
            issue = Issue(number=4, window_start=T0 - timedelta(days=7), window_end=T0,
                          created_at=T0, subject="#4", html="", text="")  # fmt: skip
            s.add(issue)
        deliverylog.snapshot(history, issue.id)
        deliverylog.recover_in_flight(history, issue.id)
        rows = itertools.islice(deliverylog.pending_rows(history, issue.id), 3)
        with deliverylog.DeliveryLog(history, issue_id=issue.id) as log:
            for row in rows:
                assert log.claim(row, f"<4.{row.subscriber_id}@example.org>")
                log.finish(row, DeliveryStatus.SENT, None)
        deliverylog.count(history, issue.id, DeliveryStatus.SENT)

    assert_searched(history, captured(history, send))


def test_a_bounce_webhook_and_status_use_indexes(history: Database) -> None:
    settings = Settings()

    def bounces_and_status() -> None:
        by_id = BounceReport(kind=BounceKind.HARD, note="5.1.1", message_id="<2.3@example.org>")
        apply_report(history, settings, "k", by_id, source="ses", identity="a", now=T0)
        by_address = BounceReport(
            kind=BounceKind.SOFT, note="4.2.2", recipients=("r5@example.com",)
        )
        out = apply_report(history, settings, "k", by_address, source="ses", identity="b",
                           authenticated=True, now=T0)  # fmt: skip
        assert out.stored == 1
        collect_status(history, settings, T0)

    assert_searched(history, captured(history, bounces_and_status))


def test_prunes_forget_and_export_use_indexes(history: Database) -> None:
    def prunes() -> None:
        assert prune_unconfirmed(history, T0) == 1
        prune_fetches(history, T0)
        export(history, "r4@example.com")
        assert forget(history, "r4@example.com", T0)

    assert_searched(history, captured(history, prunes))


def _link(blog: int, week: int) -> str:
    return f"https://blog.example/{blog}/{week}"


def _old_posts(db: Database, blogs: list[int], weeks: range) -> None:
    with db.session() as s:
        s.execute(insert(Post), [
            {"feed_id": blog, "key": f"{blog}.{week}", "title": f"Old {week}",
             "link": _link(blog, week), "canonical_url": _link(blog, week),
             "date": T0 - timedelta(weeks=week), "first_seen": T0 - timedelta(weeks=week),
             "text": "", "content_hash": "0" * 64, "links": "https://elsewhere.example/a"}
            for blog in blogs for week in weeks
        ])  # fmt: skip
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def test_planning_an_issue_uses_indexes(history: Database) -> None:
    """A preview or a send plans its issue: the week's posts, each blog's history and the links
    between the list's blogs (the last scanned every post ever stored)."""
    blogs = [add_feed(history, f"Blog {n}") for n in range(3)]
    for n, blog in enumerate(blogs):
        add_post(history, blog, f"Post {n}", date=T0 - timedelta(days=1),
                 link=f"https://blog-{n}.example/new")  # fmt: skip
    _old_posts(history, blogs, range(2, 262))  # five years: the planner reads statistics
    settings = Settings()

    def plan() -> None:
        assert plan_issue(history, settings, T0 + timedelta(days=7)).posts

    assert_searched(history, captured(history, plan))


def work(db: Database, run: Callable[[], object]) -> int:
    """How much reading ``run`` does, counted the same way every time: SQLite's virtual-machine
    instructions (its progress handler, every 16); PostgreSQL's rows visited by each scan of a
    history table in its SELECTs (EXPLAIN ANALYZE: the rows kept and those its filter removed,
    times its loops). A plan's shape can pass while it reads a blog's every post through an
    index on the blog; these counts grow with what is read."""
    if not db.is_sqlite:
        return sum(
            _rows_visited(db, s) for s in captured(db, run) if s.sql.lstrip().startswith("SELECT")
        )
    ticks = itertools.count()

    def count(connection: Any, _record: Any, _proxy: Any) -> None:
        connection.set_progress_handler(lambda: next(ticks) and 0, 16)

    def stop(connection: Any, _record: Any) -> None:
        connection.set_progress_handler(None, 0)

    event.listen(db.engine, "checkout", count)
    event.listen(db.engine, "checkin", stop)
    try:
        run()
    finally:
        event.remove(db.engine, "checkout", count)
        event.remove(db.engine, "checkin", stop)
    return next(ticks)


def _rows_visited(db: Database, statement: Statement) -> int:
    with db.engine.connect() as conn:
        nodes = list(_pg_plan(conn, statement, "ANALYZE, FORMAT JSON"))
    return sum(
        int((node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"])
        for node in nodes
        if node.get("Relation Name") in HISTORY
    )


def test_planning_an_issue_reads_as_much_in_year_five_as_in_year_one(db: Database) -> None:
    """Twenty blogs posting weekly: the same week planned on one year of their posts and on
    five. Each blog's rarity reads its last half year and its latest post before the week; the
    links, two weeks of everyone's. None of it may grow with the years before: it read every
    post of the week's blogs, with a plan that passed test_planning_an_issue_uses_indexes
    (SQLite 1,880 instructions/16 at one year, 8,145 at five; PostgreSQL 1,100 and 5,260 rows)."""
    blogs = [add_feed(db, f"Blog {n}") for n in range(20)]
    for n, blog in enumerate(blogs):
        add_post(db, blog, f"Post {n}", date=T0 + timedelta(days=1),
                 link=f"https://blog-{n}.example/new")  # fmt: skip
    settings = Settings()

    def plan() -> None:
        assert len(plan_issue(db, settings, T0 + timedelta(days=7)).posts) == 20

    _old_posts(db, blogs, range(2, 54))
    one_year = work(db, plan)
    _old_posts(db, blogs, range(54, 262))
    five_years = work(db, plan)
    assert five_years <= 1.1 * one_year, (one_year, five_years)


def test_storing_a_changed_feed_reads_as_much_in_year_five_as_in_year_one(db: Database) -> None:
    """A poll that brings a feed's twenty latest posts, changed (and one whose GUID changed),
    looks up those it stored before: on one year of the blog's posts and on five. It read every
    post the feed ever had (SQLite 26 instructions/16 at one year, 130 at five; PostgreSQL 52
    and 260 rows; now 41 and 27, 53 and 21)."""
    [blog] = [add_feed(db, "Blog")]
    entries = [_entry(f"{blog}.{week}", _link(blog, week)) for week in range(2, 22)]
    entries.append(_entry("a new guid", _link(blog, 22)))

    def store() -> None:
        with db.begin() as conn:
            # (new, updated): the new GUID is the stored post at its link
            assert merge_posts(conn, blog, entries, T0, False, PostWrites()) == (0, 21)

    _old_posts(db, [blog], range(2, 54))
    one_year = work(db, store)
    _old_posts(db, [blog], range(54, 262))
    five_years = work(db, store)
    assert five_years <= 1.1 * one_year, (one_year, five_years)


def _entry(key: str, link: str) -> PostRow:
    return PostRow(key=key, title="A post", link=link, canonical_url=link, author=None,
                   published=T0, updated=None, date=T0, text="Changed.", words=1, teaser=False,
                   categories=None, links=None, content_hash="1" * 64)  # fmt: skip


def test_every_foreign_key_is_indexed(db: Database) -> None:
    """A delete in the parent looks up its children through each foreign key."""
    lookups = []
    for table in Base.metadata.sorted_tables:
        for key in table.foreign_keys:
            column = key.parent.name
            key_column = next(iter(table.primary_key.columns))
            lookups.append(select(key_column).where(table.c[column] == 1))
    with db.engine.connect() as conn:
        literal = {"literal_binds": True}
        statements = [
            Statement(str(q.compile(conn, compile_kwargs=literal)), None) for q in lookups
        ]
    assert len(statements) >= 9
    assert_searched(db, statements)
