"""Each issue's counts, kept by the delivery log and the bounces as they happen, and the fold
that deletes an old issue's log and keeps its counts (both databases: the counts are written
in the transactions that change the rows they count)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from digest.bounces.apply import apply_report
from digest.bounces.events import issue_rates, list_events
from digest.config import Settings
from digest.delivery import counts, deliverylog
from digest.delivery.consent import forget
from digest.delivery.deliverylog import DeliveryLog
from digest.delivery.retention import fold_old_logs
from digest.delivery.send import deliver
from digest.delivery.subscribers import add_subscriber, list_subscribers
from digest.delivery.verp import make_tag
from digest.errors import PermanentSendError
from digest.ingest.tally import post_total
from digest.models import BounceEvent, Delivery, Issue, IssueCounts, Subscriber
from digest.storage import Database, utcnow
from digest.types import BounceKind, BounceReport, DeliveryStatus, IssueStatus
from tests.conftest import wait_for
from tests.delivery.test_send import Renders, add, new_issue, settings_for
from tests.issue_helpers import add_feed, add_post
from tests.smtp_helpers import FlakySMTP

KEY = "test-key"


def kept(db: Database, issue_id: int) -> dict[DeliveryStatus, int]:
    """The issue's counts as kept (zeros left out)."""
    with db.session() as s:
        tally = counts.tallies(s, [issue_id])[issue_id]
    return {status: n for status, n in tally.by_status.items() if n}


def counted_from_rows(db: Database, issue_id: int) -> dict[DeliveryStatus, int]:
    with db.session() as s:
        return dict(counts.delivery_statuses(s, issue_id))


def test_the_counts_follow_every_move_of_the_log(db: Database) -> None:
    issue = new_issue(db)
    add(db, "ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com")
    deliverylog.snapshot(db, issue)
    assert kept(db, issue) == {DeliveryStatus.PENDING: 4} == counted_from_rows(db, issue)
    ann, bob, cy, dee = deliverylog.pending_rows(db, issue)
    with DeliveryLog(db, Settings(), issue) as dlog:
        dlog.finish(ann, DeliveryStatus.SKIPPED, "nothing in the chosen sections")  # unclaimed
        assert dlog.claim(bob, "<1@x>") and dlog.claim(cy, "<2@x>") and dlog.claim(dee, "<3@x>")
        assert not dlog.claim(bob, "<4@x>")  # taken: no move counted
        assert kept(db, issue) == counted_from_rows(db, issue)
        assert kept(db, issue) == {DeliveryStatus.SKIPPED: 1, DeliveryStatus.SENDING: 3}
        dlog.finish(bob, DeliveryStatus.SENT, None)
        dlog.refused(cy, PermanentSendError("550 5.1.1 no such user", status="5.1.1"))
    # dee is still 'sending': a run that died with her message in flight.
    expected = {DeliveryStatus.SKIPPED: 1, DeliveryStatus.SENT: 1, DeliveryStatus.FAILED: 1}
    assert (
        kept(db, issue) == counted_from_rows(db, issue) == {**expected, DeliveryStatus.SENDING: 1}
    )
    # Not known dead, claimed moments ago: left in flight (deliverylog.IN_FLIGHT_GRACE).
    recent = utcnow() - deliverylog.IN_FLIGHT_GRACE
    assert deliverylog.recover_in_flight(db, issue, recent) == deliverylog.InFlight(0, 1)
    assert kept(db, issue) == counted_from_rows(db, issue)
    later = utcnow() + deliverylog.IN_FLIGHT_GRACE  # as ten minutes on
    assert deliverylog.recover_in_flight(db, issue, later) == deliverylog.InFlight(1, 0)
    assert (
        kept(db, issue) == counted_from_rows(db, issue) == {**expected, DeliveryStatus.PENDING: 1}
    )
    with db.session() as s:
        tally = counts.tallies(s, [issue])[issue]
        assert tally.last_sent_at is not None and counts.last_sent(s) == tally.last_sent_at
        # A refusal while sending is the failed row: it is no bounce of the issue's rates.
        assert (tally.hard, tally.soft, tally.complaints) == (0, 0, 0)
        assert counts.totals(s)[DeliveryStatus.SENT] == 1


def test_a_whole_send_counts_what_it_did(db: Database) -> None:
    sink = FlakySMTP()
    try:
        issue = new_issue(db)
        add(db, "ann@example.com", "bob@example.com", "cy@example.com")
        sink.handler.drop = 1  # one message goes back to pending, then again
        summary = deliver(db, settings_for(sink), issue, Renders(), backoff=0)
    finally:
        sink.close()
    assert summary.sent == 3
    assert kept(db, issue) == counted_from_rows(db, issue) == {DeliveryStatus.SENT: 3}
    [rates] = issue_rates(db)
    assert (rates.sent, rates.failed) == (3, 0)


def test_a_forgotten_reader_leaves_only_the_counts_of_what_was_not_sent(db: Database) -> None:
    issue = new_issue(db)
    add(db, "ann@example.com", "bob@example.com")
    deliverylog.snapshot(db, issue)
    ann, _bob = deliverylog.pending_rows(db, issue)
    with DeliveryLog(db, Settings(), issue) as dlog:
        assert dlog.claim(ann, "<1@x>")
        dlog.finish(ann, DeliveryStatus.SENT, None)
    forget(db, "ann@example.com", utcnow())  # sent: stays counted, as history
    forget(db, "bob@example.com", utcnow())  # pending: will never go, no longer counted
    assert kept(db, issue) == {DeliveryStatus.SENT: 1}
    assert counted_from_rows(db, issue) == {}


def sent_to(db: Database, *emails: str, days_ago: int = 0) -> int:
    """An issue sent to these readers (the log's own way), made ``days_ago``."""
    issue = new_issue(db)
    for email in emails:
        add_subscriber(db, email)
    deliverylog.snapshot(db, issue)
    with DeliveryLog(db, Settings(), issue) as dlog:
        for row in deliverylog.pending_rows(db, issue):
            assert dlog.claim(row, f"<{issue}.{row.email}>")
            dlog.finish(row, DeliveryStatus.SENT, None)
    made = utcnow() - timedelta(days=days_ago)
    with db.session() as s:
        s.execute(
            update(Issue).where(Issue.id == issue).values(status=IssueStatus.SENT, created_at=made)
        )
    return issue


def report(kind: BounceKind, email: str, message_id: str | None = None) -> BounceReport:
    return BounceReport(kind=kind, note="test", recipients=(email,), message_id=message_id)


def test_bounces_and_complaints_count_each_reader_once(db: Database) -> None:
    issue = sent_to(db, "ann@example.com", "bob@example.com", "cy@example.com")
    settings = Settings()
    hard = report(BounceKind.HARD, "ann@example.com", f"<{issue}.ann@example.com>")
    for n in (1, 2):  # two reports about one message: one reader bounced
        apply_report(db, settings, KEY, hard, source="imap", identity=f"h{n}")
    spam = report(BounceKind.COMPLAINT, "bob@example.com", f"<{issue}.bob@example.com>")
    apply_report(db, settings, KEY, spam, source="ses", identity="c1")
    [rates] = issue_rates(db)
    assert (rates.sent, rates.hard, rates.soft, rates.complaints) == (3, 1, 0, 1)
    assert rates.bounce_rate == 1 / 3


def test_two_reports_at_once_count_the_reader_once(db: Database) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns already (BEGIN IMMEDIATE)")
    issue = sent_to(db, "ann@example.com")
    hard = report(BounceKind.HARD, "ann@example.com", f"<{issue}.ann@example.com>")
    outcomes: list[object] = []

    def second_report() -> None:
        try:
            outcomes.append(apply_report(db, Settings(), KEY, hard, source="ses", identity="2"))
        except Exception as e:  # noqa: BLE001 - the test fails with it, not a silent thread
            outcomes.append(e)

    late = threading.Thread(target=second_report)
    # The first report's transaction, half-way: it holds the reader's row, as apply_report
    # takes it, while the second report comes in.
    with db.session() as s:
        ann = s.scalars(
            select(Subscriber).where(Subscriber.email == "ann@example.com").with_for_update()
        ).one()
        late.start()
        wait_for(lambda: _waiting_on_a_lock(db), what="the second report waiting for the row")
        s.add(
            BounceEvent(
                at=utcnow(),
                subscriber_id=ann.id,
                issue_id=issue,
                kind=BounceKind.HARD,
                source="imap",
                source_id="first",
                status_code="5.1.1",
            )
        )
        counts.add(s, issue, {"hard": 1})
    late.join(timeout=30)
    assert [type(o).__name__ for o in outcomes] == ["Outcome"], outcomes
    [rates] = issue_rates(db)
    assert rates.hard == 1  # 2 when both read "no earlier event" before either stored one
    assert len(list_events(db)) == 2  # both reports kept


def _waiting_on_a_lock(db: Database) -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query ILIKE '%FROM subscribers%FOR UPDATE%'"
    )
    with db.engine.connect() as conn:
        return bool(conn.scalar(query))


def test_an_old_log_is_folded_in_batches_and_its_counts_stay(db: Database) -> None:
    readers = [f"r{n}@example.com" for n in range(7)]
    old = sent_to(db, *readers, days_ago=200)
    recent = sent_to(db, *readers, days_ago=10)
    unfinished = new_issue(db)  # old, but not every delivery done: kept
    deliverylog.snapshot(db, unfinished)
    with db.session() as s:
        made = utcnow() - timedelta(days=300)
        s.execute(update(Issue).where(Issue.id == unfinished).values(created_at=made))
    apply_report(
        db, Settings(), KEY, report(BounceKind.HARD, readers[0], f"<{old}.{readers[0]}>"),
        source="imap", identity="x",
    )  # fmt: skip
    before = issue_rates(db)
    stops = iter([False, True])  # a daemon stopping after the first batch
    part = fold_old_logs(db, utcnow(), timedelta(days=180), batch=3, stop=lambda: next(stops))
    assert (part.issues, part.rows) == ([], 3)  # not folded yet: the next run finishes it
    folded = fold_old_logs(db, utcnow(), timedelta(days=180), batch=3)
    assert folded.issues == [next(r.number for r in before if r.number == number(db, old))]
    assert folded.rows == 4
    assert counted_from_rows(db, old) == {}
    assert counted_from_rows(db, recent) == {DeliveryStatus.SENT: 7}
    assert counted_from_rows(db, unfinished) == {DeliveryStatus.PENDING: 7}
    assert issue_rates(db) == before
    assert kept(db, old) == {DeliveryStatus.SENT: 7}
    with db.session() as s:
        assert s.scalar(select(IssueCounts.folded_at).where(IssueCounts.issue_id == old))
    again = fold_old_logs(db, utcnow(), timedelta(days=180))
    assert (again.issues, again.rows) == ([], 0)


def number(db: Database, issue_id: int) -> int:
    with db.session() as s:
        return int(s.scalar(select(Issue.number).where(Issue.id == issue_id)) or 0)


def test_a_late_bounce_of_a_folded_issue(db: Database) -> None:
    old = sent_to(db, "ann@example.com", "bob@example.com", days_ago=200)
    sent_to(db, "ann@example.com", "bob@example.com", days_ago=1)  # a later issue
    fold_old_logs(db, utcnow(), timedelta(days=180))
    settings = Settings().replace(newsletter={"bounce_address": "bounces@news.example.org"})
    # By its Message-ID (gone with the log), trusted as a webhook's: the reader bounces, and
    # the issue is unknown (not the later issue, whose message this was not).
    late = report(BounceKind.HARD, "ann@example.com", f"<{old}.ann@example.com>")
    done = apply_report(db, settings, KEY, late, source="ses", identity="1", authenticated=True)
    assert done.bounced == ["ann@example.com"]
    [event] = list_events(db)
    assert event.issue is None
    assert [(r.hard, r.sent) for r in issue_rates(db)] == [(0, 2), (0, 2)]
    # By its VERP tag: the tag names the issue, whose counts take it.
    bob = next(s for s in list_subscribers(db) if s.email == "bob@example.com")
    tagged = f"bounces+{make_tag(KEY, bob.id, bob.email, old)}@news.example.org"
    dsn = BounceReport(kind=BounceKind.HARD, note="5.1.1", addressed_to=(tagged,))
    assert apply_report(db, settings, KEY, dsn, source="imap", identity="2").bounced == [bob.email]
    assert [(r.hard, r.sent) for r in issue_rates(db)] == [(0, 2), (1, 2)]
    with db.session() as s:
        assert (
            s.scalar(select(func.count()).select_from(Delivery).where(Delivery.issue_id == old))
            == 0
        )


def test_the_migration_counts_the_rows_already_there(db: Database) -> None:
    """An older database's log, bounces and posts, counted when 0011 comes (down to the
    revision before it and up again: the counts made afresh from the rows)."""
    from alembic import command
    from alembic.config import Config

    from digest.revisions import MIGRATIONS, head_revision

    issue = sent_to(db, "ann@example.com", "bob@example.com", "cy@example.com")
    spam = report(BounceKind.COMPLAINT, "bob@example.com", f"<{issue}.bob@example.com>")
    apply_report(db, Settings(), KEY, spam, source="ses", identity="c")
    blog = add_feed(db, "Deep Blog")
    for k in range(3):
        add_post(db, blog, f"Post {k}", date=utcnow())
    before = issue_rates(db)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    for move in (command.downgrade, command.upgrade):
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            move(cfg, "0009" if move is command.downgrade else head_revision())
    assert issue_rates(db) == before
    assert (before[0].sent, before[0].complaints) == (3, 1)
    assert kept(db, issue) == {DeliveryStatus.SENT: 3}
    with db.session() as s:
        assert post_total(s) == 3
        tally = counts.tallies(s, [issue])[issue]
        assert tally.last_sent_at is not None and tally.folded_at is None


def test_a_scrape_and_status_read_no_delivery_row(db: Database) -> None:
    """What keeps /metrics and `digest status` flat in history: not one statement of theirs
    reads the delivery log or the posts."""
    from sqlalchemy import event

    from digest.daemon.metrics import collect
    from digest.daemon.status import collect_status

    sent_to(db, "ann@example.com", "bob@example.com")
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        names = {m.name for m in collect(db, utcnow())}
        collect_status(db, Settings(), utcnow())
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert {"digest_deliveries", "digest_posts", "digest_issue_bounce_rate"} <= names
    assert statements
    assert not [q for q in statements if "deliveries" in q or "FROM posts" in q]
