"""Delivery: the log per (issue, subscriber), resuming, retries, bounces, one render per choice."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
from sqlalchemy import Select, select, update

from digest.config import Settings
from digest.delivery import deliverylog, dryrun
from digest.delivery.dryrun import Recipient
from digest.delivery.mail import SmtpTransport
from digest.delivery.send import deliver, send_issue
from digest.delivery.subscribers import (
    add_subscriber,
    list_subscribers,
    subscriber_for_token,
    unsubscribe,
)
from digest.errors import SendError
from digest.locks import SENDER
from digest.models import Delivery, Issue, Subscriber
from digest.storage import Database, utcnow
from digest.types import ML, SYSTEMS, UNSUBSCRIBE_PLACEHOLDER, RenderedEmail, SubscriberStatus
from tests.conftest import free_port, wait_for
from tests.issue_helpers import SAT, add_feed, add_post
from tests.lock_helpers import hearing_takeovers, take_over
from tests.smtp_helpers import FlakySMTP

_numbers = itertools.count(1)


@pytest.fixture
def sink() -> Iterator[FlakySMTP]:
    server = FlakySMTP()
    yield server
    server.close()


def settings_for(sink: FlakySMTP) -> Settings:
    return Settings().replace(
        smtp={"host": "127.0.0.1", "port": sink.port},
        newsletter={
            "from_addr": "Weekend Reading <news@example.org>",
            "base_url": "https://digest.example.org",
            "secret_key": "test-key",
        },
    )


def new_issue(db: Database) -> int:
    number = next(_numbers)
    with db.session() as s:
        issue = Issue(
            number=number, window_start=SAT - timedelta(days=7), window_end=SAT,
            created_at=utcnow(), subject=f"Weekend Reading #{number}", html="<p>web</p>",
            text="web", post_count=1, status="recorded",
        )  # fmt: skip
        s.add(issue)
        s.flush()
        return issue.id


class Renders:
    """A fake render_for: records its calls; sections in `empty` have no posts."""

    def __init__(self, empty: frozenset[str] = frozenset()) -> None:
        self.calls: list[frozenset[str] | None] = []
        self.empty = empty

    def __call__(self, sections: frozenset[str] | None) -> RenderedEmail | None:
        self.calls.append(sections)
        if sections is not None and sections <= self.empty:
            return None
        name = ",".join(sorted(sections)) if sections else "all"
        return RenderedEmail(
            f"Weekend Reading [{name}]",
            f'<p>{name}</p><a href="{UNSUBSCRIBE_PLACEHOLDER}">unsubscribe</a>',
            f"{name}\nUnsubscribe: {UNSUBSCRIBE_PLACEHOLDER}\n",
        )


def statuses(db: Database, issue_id: int) -> dict[str, str]:
    with db.session() as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id)
        )
        return {email: status for email, status in rows}


def issue_status(db: Database, issue_id: int) -> str:
    with db.session() as s:
        return str(s.scalar(select(Issue.status).where(Issue.id == issue_id)))


def add(db: Database, *emails: str, sections: str | None = None) -> None:
    for email in emails:
        add_subscriber(db, email, sections=sections)


def test_each_subscriber_once_with_a_working_personal_link(db: Database, sink: FlakySMTP) -> None:
    add(db, "a@example.com", "b@example.com", "c@example.com")
    issue = new_issue(db)
    settings = settings_for(sink)
    summary = deliver(db, settings, issue, Renders())
    assert (summary.sent, summary.failed, summary.pending) == (3, 0, 0)
    assert sorted(sink.recipients()) == ["a@example.com", "b@example.com", "c@example.com"]
    assert issue_status(db, issue) == "sent"
    assert set(statuses(db, issue).values()) == {"sent"}
    for raw in sink.raw:
        msg = message_from_bytes(raw, policy=default)
        url = str(msg["List-Unsubscribe"]).strip("<>")
        token = url.rsplit("/", 1)[1]
        assert url == f"https://digest.example.org/unsubscribe/{token}"
        who = subscriber_for_token(db, "test-key", token)
        assert who is not None and who.email == str(msg["To"])
        assert url in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    again = deliver(db, settings, issue, Renders())
    assert (again.sent, again.already) == (0, 3)
    assert len(sink.recipients()) == 3


def test_rendered_once_per_section_choice(db: Database, sink: FlakySMTP) -> None:
    add(db, "all1@example.com", "all2@example.com")
    add(db, "ml1@example.com", "ml2@example.com", "ml3@example.com", sections="ml")
    add(db, "sys@example.com", sections="systems")
    add(db, "both@example.com", sections="systems,ml")
    renders = Renders(empty=frozenset({SYSTEMS}))
    summary = deliver(db, settings_for(sink), new_issue(db), renders)
    assert Counter(renders.calls) == {
        None: 1,
        frozenset({ML}): 1,
        frozenset({SYSTEMS}): 1,
        frozenset({ML, SYSTEMS}): 1,
    }
    assert summary.renders == 4
    assert (summary.sent, summary.skipped) == (6, 1)  # systems is empty this week
    subjects = {str(m["To"]): str(m["Subject"]) for m in sink.messages}
    assert subjects["ml2@example.com"] == "Weekend Reading [ml]"
    assert subjects["all1@example.com"] == "Weekend Reading [all]"
    assert "sys@example.com" not in subjects


def test_451_once_still_delivers(db: Database, sink: FlakySMTP) -> None:
    add(db, "a@example.com", "b@example.com")
    sink.handler.replies = ["451 4.7.1 greylisted"]
    summary = deliver(db, settings_for(sink), new_issue(db), Renders(), backoff=0.01)
    assert (summary.sent, summary.pending) == (2, 0)
    assert sorted(sink.recipients()) == ["a@example.com", "b@example.com"]


def test_dropped_connection_is_retried(db: Database, sink: FlakySMTP) -> None:
    add(db, "a@example.com", "b@example.com")
    sink.handler.drop = 1
    summary = deliver(db, settings_for(sink), new_issue(db), Renders(), backoff=0.01)
    assert summary.sent == 2
    assert sorted(sink.recipients()) == ["a@example.com", "b@example.com"]


def test_550_5_1_1_fails_one_and_bounces_it_at_once_a_block_only_when_repeated(
    db: Database, sink: FlakySMTP
) -> None:
    """The same rules as a DSN's (issue 23): a dead address bounces at its first refusal;
    a policy block (5.7.1) is soft, bounced after bounces.soft_limit of them."""
    add(db, "a@example.com", "gone@example.com", "blocked@example.com", "c@example.com")
    sink.handler.reject = {
        "gone@example.com": "550 5.1.1 mailbox unavailable",
        "blocked@example.com": "554 5.7.1 blocked",
    }
    settings = settings_for(sink).replace(bounces={"soft_limit": 2})
    issue = new_issue(db)
    summary = deliver(db, settings, issue, Renders())
    assert (summary.sent, summary.failed, summary.pending) == (2, 2, 0)
    assert statuses(db, issue)["gone@example.com"] == "failed"
    assert issue_status(db, issue) == "sent"
    assert summary.bounced == ["gone@example.com"]
    now = {s.email: s.status for s in list_subscribers(db)}
    assert (now["gone@example.com"], now["blocked@example.com"]) == ("bounced", "active")
    with db.session() as s:
        error = s.scalar(select(Delivery.last_error).where(Delivery.status == "failed"))
    assert error is not None and "550" in error
    summary = deliver(db, settings, new_issue(db), Renders())
    assert (summary.sent, summary.failed) == (2, 1)  # gone: not mailed any more
    assert summary.bounced == ["blocked@example.com"]  # the second block in the window
    summary = deliver(db, settings, new_issue(db), Renders())
    assert (summary.sent, summary.failed) == (2, 0)


def test_a_success_resets_the_hard_failure_count(db: Database, sink: FlakySMTP) -> None:
    add(db, "flaky@example.com")
    settings = settings_for(sink)
    sink.handler.reject = {"flaky@example.com": "550 5.7.1 not now"}
    deliver(db, settings, new_issue(db), Renders())
    sink.handler.reject = {}
    deliver(db, settings, new_issue(db), Renders())
    assert list_subscribers(db)[0].hard_bounces == 0


def test_in_flight_row_is_sent_again_and_others_resume(db: Database, sink: FlakySMTP) -> None:
    add(db, "a@example.com", "b@example.com", "c@example.com", "d@example.com")
    issue = new_issue(db)
    settings = settings_for(sink)
    stop = threading.Event()

    class StopAfterTwo(SmtpTransport):
        def send(self, raw: bytes, recipient: str, sender: str | None = None) -> None:
            super().send(raw, recipient, sender)
            if len(sink.recipients()) == 2:
                stop.set()

    with StopAfterTwo(settings) as transport:
        first = deliver(db, settings, issue, Renders(), stop=stop, transport=transport)
    assert (first.sent, first.pending, first.stopped) == (2, 2, True)
    assert issue_status(db, issue) == "recorded"
    # Pretend the run died with c's message handed over: its row says 'sending'.
    with db.session() as s:
        c = s.scalar(select(Subscriber.id).where(Subscriber.email == "c@example.com"))
        s.execute(update(Delivery).where(Delivery.subscriber_id == c).values(status="sending"))
    second = deliver(db, settings, issue, Renders())
    assert (second.sent, second.resent, second.already, second.pending) == (2, 1, 2, 0)
    assert sorted(sink.recipients()) == [f"{x}@example.com" for x in "abcd"]
    assert issue_status(db, issue) == "sent"
    with db.session() as s:
        attempts = s.scalar(select(Delivery.attempts).where(Delivery.subscriber_id == c))
    assert attempts == 1  # claimed once; the 'sending' row was set by hand above


def test_audience_is_fixed_when_an_issue_starts(db: Database, sink: FlakySMTP) -> None:
    add(db, "a@example.com", "b@example.com")
    issue = new_issue(db)
    settings = settings_for(sink)
    stop = threading.Event()
    stop.set()
    deliver(db, settings, issue, Renders(), stop=stop)  # snapshot taken, nothing sent
    add(db, "late@example.com")
    b = next(s for s in list_subscribers(db) if s.email == "b@example.com")
    unsubscribe(db, b.id)
    summary = deliver(db, settings, issue, Renders())
    assert (summary.sent, summary.skipped) == (1, 1)
    assert sink.recipients() == ["a@example.com"]
    assert statuses(db, issue) == {"a@example.com": "sent", "b@example.com": "skipped"}


def test_a_server_that_keeps_failing_stops_the_run(db: Database, sink: FlakySMTP) -> None:
    add(db, *[f"r{i}@example.com" for i in range(5)])
    sink.handler.replies = ["451 busy"] * 100
    issue = new_issue(db)
    summary = deliver(db, settings_for(sink), issue, Renders(), attempts=2, backoff=0.001)
    assert summary.aborted is not None and "451 busy" in summary.aborted
    assert (summary.sent, summary.pending) == (0, 5)
    assert summary.as_json()["pending"] == 5
    assert "left for the next `digest send`" in summary.line()
    sink.handler.replies = []
    assert deliver(db, settings_for(sink), issue, Renders()).sent == 5


def test_sender_refused_stops_with_an_error(db: Database, sink: FlakySMTP) -> None:
    add(db, "a@example.com")
    settings = settings_for(sink).replace(newsletter={"from_addr": "x@bad.example"})

    class RefuseSender(SmtpTransport):
        def send(self, raw: bytes, recipient: str, sender: str | None = None) -> None:
            raise SendError("the server refuses the sender x@bad.example: 553")

    issue = new_issue(db)
    with RefuseSender(settings) as t, pytest.raises(SendError, match="refuses the sender"):
        deliver(db, settings, issue, Renders(), transport=t)
    assert statuses(db, issue) == {"a@example.com": "pending"}


# --- send_issue: with the real issues module -------------------------------------------------


def plain(raw: bytes) -> str:
    body = message_from_bytes(raw, policy=default).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def posts(db: Database) -> None:
    ml = add_feed(db, "Deep Blog", "ml")
    sys_ = add_feed(db, "Kernel Blog", "systems")
    add_post(db, ml, "Attention again", date=SAT - timedelta(days=2))
    add_post(db, sys_, "Faster fsync", date=SAT - timedelta(days=3))


def test_send_issue_records_and_delivers_by_sections(db: Database, sink: FlakySMTP) -> None:
    posts(db)
    add(db, "all@example.com")
    add(db, "ml@example.com", sections="ml")
    settings = settings_for(sink)
    summary = send_issue(db, settings, as_of=SAT)
    assert (summary.mode, summary.issue, summary.sent) == ("send", 1, 2)
    texts = {str(m["To"]): plain(raw) for m, raw in zip(sink.messages, sink.raw, strict=True)}
    assert "Attention again" in texts["ml@example.com"]
    assert "Faster fsync" not in texts["ml@example.com"]
    assert "Faster fsync" in texts["all@example.com"]
    again = send_issue(db, settings, as_of=SAT)
    assert (again.sent, again.already) == (0, 2)
    assert len(sink.messages) == 2


def test_send_issue_dry_run_and_test_copy_record_nothing(db: Database, sink: FlakySMTP) -> None:
    posts(db)
    add(db, "all@example.com")
    add(db, "sys@example.com", sections="systems")
    settings = settings_for(sink)
    recipients: list[Recipient] = []
    dry = send_issue(db, settings, as_of=SAT, dry_run=True, each_recipient=recipients.append)
    assert dry.mode == "dry-run"
    assert [(r.email, r.gets) for r in recipients] == [
        ("all@example.com", True),
        ("sys@example.com", True),
    ]
    assert "would go to 2 of 2" in dry.line()
    test = send_issue(db, settings, as_of=SAT, to="Editor@Example.org")
    assert (test.mode, test.sent, test.test_to) == ("test", 1, "editor@example.org")
    assert sink.recipients() == ["editor@example.org"]
    with db.session() as s:
        assert s.scalar(select(Issue.id)) is None
        assert s.scalar(select(Delivery.id)) is None


def test_send_issue_with_sending_off_records_only(db: Database) -> None:
    posts(db)
    add(db, "all@example.com")
    summary = send_issue(db, Settings(), as_of=SAT)
    assert summary.mode == "off"
    assert "sending is off" in summary.line()
    with db.session() as s:
        assert s.scalar(select(Issue.status)) == "skipped"


def test_send_issue_empty_week(db: Database, sink: FlakySMTP) -> None:
    add(db, "all@example.com")
    summary = send_issue(db, settings_for(sink), as_of=SAT)
    assert summary.mode == "empty"
    assert summary.line().startswith("nothing to send")
    assert sink.recipients() == []


def test_several_connections_share_the_work(db: Database, sink: FlakySMTP) -> None:
    emails = [f"r{i}@example.com" for i in range(12)]
    add(db, *emails)
    # The server holds every message until three connections are open: one connection
    # cannot take all twelve before the others start.
    sink.handler.hold_after(0)
    settings = settings_for(sink).replace(smtp={"connections": 3})
    issue = new_issue(db)
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(deliver, db, settings, issue, Renders())
        try:
            wait_for(lambda: sink.handler.ehlos == 3, what="three connections")
        finally:
            sink.handler.release()
        summary = sending.result(timeout=60)
    assert summary.sent == 12
    assert sorted(sink.recipients()) == sorted(emails)
    assert sink.handler.ehlos == 3  # three connections, each reused


def test_a_send_whose_lock_is_taken_over_stops_before_another_message(
    db: Database, sink: FlakySMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The duplicate-after-lost-lock scenario: the send's heartbeat was late, a newcomer took
    the lock over (it will send again what is left 'sending'); the old send stops at once,
    before another message, and the newcomer finishes: each subscriber gets one message."""
    posts(db)
    everyone = [f"reader{i}@example.com" for i in range(10)]
    add(db, *everyone)
    settings = settings_for(sink).replace(smtp={"connections": 1})
    sink.handler.hold_after(3)  # the 4th message is with the server when the lock is lost
    with hearing_takeovers(monkeypatch) as holder, ThreadPoolExecutor(1) as pool:
        sending = pool.submit(send_issue, db, settings, as_of=SAT)
        try:
            assert sink.handler.held.wait(30), "the send never reached its 4th message"
            newcomer = take_over(db, SENDER)
            assert holder.heard.wait(30), "the send never noticed it lost its lock"
        finally:
            sink.handler.release()
        summary = sending.result(60)
    assert len(sink.recipients()) == 4  # 3, and the one in flight: none after the takeover
    assert (summary.sent, summary.pending) == (4, 6)
    assert summary.aborted is not None
    assert summary.aborted.startswith("the send lock was taken over by pid ")
    assert "stopped early: the send lock was taken over by pid" in summary.line()
    newcomer.release()  # the newcomer's own send: it resumes where the old one stopped
    rest = send_issue(db, settings, as_of=SAT)
    assert (rest.sent, rest.already, rest.resent, rest.pending) == (6, 4, 0, 0)
    got = Counter(sink.recipients())
    assert set(got) == set(everyone) and max(got.values()) == 1  # 0 duplicates


def test_a_resumed_send_says_what_it_did_then_that_nothing_is_new(
    db: Database, sink: FlakySMTP
) -> None:
    """A crash left issue #1 part-delivered; a later `digest send` delivers the rest and says
    so ("resumed issue #1: 3 sent"), then that there is nothing new: not "nothing to send"
    alone, as if it had done nothing."""
    posts(db)
    add(db, *(f"reader{i}@example.com" for i in range(4)))
    settings = settings_for(sink)
    assert send_issue(db, settings, as_of=SAT).sent == 4
    with db.session() as s:  # as a kill -9 an hour ago left it: one in flight, two not tried
        ids = s.scalars(select(Delivery.id).order_by(Delivery.id)).all()
        s.execute(update(Delivery).where(Delivery.id.in_(ids[1:3])).values(status="pending"))
        an_hour_ago = utcnow() - timedelta(hours=1)
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[3])
            .values(status="sending", updated_at=an_hour_ago)
        )
        s.execute(update(Issue).values(status="recorded"))
    summary = send_issue(db, settings, now=SAT + timedelta(days=3))
    assert (summary.mode, summary.issue, summary.sent, summary.already) == ("resumed", 1, 3, 1)
    assert summary.then is not None and summary.then.mode == "empty"
    line = summary.line()
    assert line.startswith("resumed issue #1: 3 sent, 0 failed, 0 skipped, 1 sent before")
    assert "; then nothing to send: no new posts from" in line
    data = summary.as_json()
    assert (data["mode"], data["sent"], data["left"], data["reason"]) == ("resumed", 3, 0, None)
    assert data["then"]["mode"] == "empty"


def test_smtp_down_the_summary_says_why_messages_are_left(db: Database) -> None:
    add(db, "a@example.com", "b@example.com")
    issue = new_issue(db)
    closed = free_port()  # nothing listens: the SMTP server is down
    settings = Settings().replace(
        smtp={"host": "127.0.0.1", "port": closed},
        newsletter={"from_addr": "n@example.org", "base_url": "https://d.example.org"},
    )
    summary = deliver(db, settings, issue, Renders(), attempts=2, backoff=0.0)
    assert (summary.sent, summary.pending, summary.aborted) == (0, 2, None)
    why = f"cannot connect to 127.0.0.1:{closed}: "
    assert summary.reason() is not None and summary.reason().startswith(why)  # type: ignore[union-attr]
    line = summary.line()
    assert "2 left for the next `digest send`" in line
    assert f"; the last SMTP error: {why}" in line and "\n" not in line
    data = summary.as_json()
    assert (data["left"], data["reason"]) == (2, summary.reason())


def test_rows_are_read_a_page_at_a_time_and_each_sent_once(
    db: Database, sink: FlakySMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 2: a stop in the middle of a page and a resumed run send each reader once;
    the rows are read as the send goes, never the whole list at once."""
    monkeypatch.setattr(deliverylog, "PAGE", 2)
    emails = [f"r{i}@example.com" for i in range(7)]
    add(db, *emails)
    issue = new_issue(db)
    settings = settings_for(sink)
    stop = threading.Event()
    pages: list[int] = []
    read_page = deliverylog.page_query

    def counted(issue_id: int, after: int | None) -> Select[Any]:
        pages.append(len(sink.recipients()))
        return read_page(issue_id, after)

    monkeypatch.setattr(deliverylog, "page_query", counted)

    class StopAfterThree(SmtpTransport):
        def send(self, raw: bytes, recipient: str, sender: str | None = None) -> None:
            super().send(raw, recipient, sender)
            if len(sink.recipients()) == 3:
                stop.set()

    with StopAfterThree(settings) as transport:
        first = deliver(db, settings, issue, Renders(), stop=stop, transport=transport)
    assert (first.sent, first.pending, first.stopped) == (3, 4, True)
    assert pages[0] == 0 and pages[1] > 0  # the second page was read once the first was sent
    second = deliver(db, settings, issue, Renders())
    assert (second.sent, second.already, second.pending) == (4, 3, 0)
    assert sorted(sink.recipients()) == emails  # each once
    assert set(statuses(db, issue).values()) == {"sent"}


def test_a_page_of_pending_rows_is_a_range_of_the_index(db: Database) -> None:
    """The page query walks uq_delivery (issue_id, subscriber_id) in order: no scan of the
    issue's rows and no sort per page, whatever the list's size."""
    if not db.is_sqlite:
        pytest.skip("SQLite's plan (PostgreSQL chooses by its statistics)")
    query = deliverylog.page_query(1, 5).compile(
        dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    with db.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
    assert "deliveries USING INDEX " in plan  # the unique constraint's (SQLite names it)
    assert "(issue_id=? AND subscriber_id>?)" in plan
    assert "TEMP B-TREE" not in plan


def test_a_dry_run_reads_the_list_a_page_at_a_time(
    db: Database, sink: FlakySMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dryrun, "PAGE", 2)  # pages of 2, 2 and 1
    posts(db)
    emails = [f"{c}@example.com" for c in "edcba"]
    for email in emails:
        add(db, email, sections="systems" if email < "c" else None)
    add(db, "gone@example.com")
    with db.session() as s:
        s.execute(
            update(Subscriber)
            .where(Subscriber.email == "gone@example.com")
            .values(status=SubscriberStatus.UNSUBSCRIBED)
        )
    recipients: list[Recipient] = []
    dry = send_issue(
        db, settings_for(sink), as_of=SAT, dry_run=True, each_recipient=recipients.append
    )
    assert [r.email for r in recipients] == sorted(emails)  # each once, by address
    assert dry.dry_run is not None
    assert (dry.dry_run.active, dry.dry_run.gets) == (5, 5)
    assert {k: n for k, (n, _subject) in dry.dry_run.by_choice.items()} == {"systems": 2, "all": 3}
