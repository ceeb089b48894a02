"""The daemon in this process, with fake poll/send/serve: its jobs, its send state, its shutdown."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from digest.config import Settings
from digest.configfile import load_settings
from digest.daemon import service as daemon_module
from digest.daemon.schedule import SEND_STATE_KEY, SendState
from digest.daemon.service import Daemon
from digest.delivery.summary import SendSummary
from digest.errors import DigestError, LockedError, TransientSendError
from digest.ingest.feedstore import spread_overdue_polls
from digest.ingest.summary import PollSummary
from digest.models import Feed
from digest.storage import Database
from tests.conftest import wait_for
from tests.poll_helpers import write_opml

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # a Saturday: the default send time


def make_settings(**env: str) -> Settings:
    base = {"DIGEST_WEB_ENABLED": "false", "DIGEST_FEEDS_POLL_INTERVAL": "2s"}
    base.update({f"DIGEST_{k.upper()}": v for k, v in env.items()})
    return load_settings(env=base)


@dataclass
class FakePoll:
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Set: each poll waits for it, ignoring stop (a job that will not finish in time), and
    # then ends as a poll refused by another's lock does: nothing more to store or read.
    hold: threading.Event | None = None

    def __call__(self, db: Database, settings: Settings, **kwargs: Any) -> PollSummary:
        self.calls.append(kwargs)
        if self.hold is not None:
            self.hold.wait(60)
            raise LockedError("released by the test")
        return PollSummary(feeds=1, new_posts=2, elapsed_s=0.01)


@dataclass
class FakeSend:
    calls: list[datetime] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # SendSummary or an exception, in order

    def __call__(self, db: Database, settings: Settings, **kwargs: Any) -> SendSummary:
        self.calls.append(kwargs["as_of"])
        assert "stop" in kwargs
        result = self.results.pop(0) if self.results else SendSummary(issue=len(self.calls))
        if isinstance(result, Exception):
            raise result
        return result


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def state(db: Database) -> SendState | None:
    return SendState.from_json(db.get_meta(SEND_STATE_KEY))


# --- sends ---------------------------------------------------------------------------------


def test_fresh_database_sends_at_the_next_send_time_only(db: Database) -> None:
    send, clock = FakeSend(), Clock(T0 + timedelta(hours=2))
    d = Daemon(db, make_settings(), send=send, clock=clock)
    d.check_sends()
    assert send.calls == []  # 08:00 today was before this daemon's time
    assert state(db) == SendState(last_due=T0)
    clock.now = T0 + timedelta(days=7, seconds=1)
    d.check_sends()
    assert send.calls == [T0 + timedelta(days=7)]
    d.check_sends()
    assert len(send.calls) == 1
    assert state(db) == SendState(last_due=T0 + timedelta(days=7))


def test_restart_does_not_resend_and_a_missed_send_runs_once(db: Database) -> None:
    send = FakeSend()
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7)).to_json())
    # Down over the send time; back 20 hours later, within the 1-day grace.
    clock = Clock(T0 + timedelta(hours=20))
    Daemon(db, make_settings(), send=send, clock=clock).check_sends()
    assert send.calls == [T0]
    # A restart right after: nothing again.
    Daemon(db, make_settings(), send=send, clock=clock).check_sends()
    assert send.calls == [T0]


def test_missed_send_older_than_grace_is_skipped(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    send = FakeSend()
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7)).to_json())
    clock = Clock(T0 + timedelta(hours=30))
    with caplog.at_level(logging.WARNING, logger="digest.daemon.sends"):
        Daemon(db, make_settings(), send=send, clock=clock).check_sends()
    assert send.calls == []
    assert state(db) == SendState(last_due=T0)
    assert "skipping the send due 2026-11-28 08:00 UTC" in caplog.text


def test_grace_is_a_setting(db: Database) -> None:
    send = FakeSend()
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7)).to_json())
    clock = Clock(T0 + timedelta(hours=30))
    settings = make_settings(newsletter_send_grace="2d")
    Daemon(db, settings, send=send, clock=clock).check_sends()
    assert send.calls == [T0]


def test_interrupted_send_is_resumed_after_restart(db: Database) -> None:
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7)).to_json())
    clock = Clock(T0 + timedelta(seconds=1))
    stop = threading.Event()

    def interrupted(db: Database, settings: Settings, **kwargs: Any) -> SendSummary:
        stop.set()  # SIGTERM arrived during the send
        return SendSummary(issue=1, sent=3, pending=2, stopped=True)

    d = Daemon(db, make_settings(), send=interrupted, clock=clock, stop=stop)
    d.check_sends()
    assert state(db) == SendState(last_due=T0 - timedelta(days=7), in_progress=T0)
    # The next start (a minute later) finishes it, for the same scheduled time.
    clock.now = T0 + timedelta(minutes=1)
    again = FakeSend()
    Daemon(db, make_settings(), send=again, clock=clock).check_sends()
    assert again.calls == [T0]
    assert state(db) == SendState(last_due=T0)


def test_failed_send_is_kept_for_a_retry(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7)).to_json())
    clock = Clock(T0 + timedelta(seconds=5))
    send = FakeSend(results=[TransientSendError("451 try later")])
    d = Daemon(db, make_settings(), send=send, clock=clock)
    with caplog.at_level(logging.ERROR, logger="digest.daemon.service"):
        d.check_sends()
    assert "451 try later; retry in 5m" in caplog.text
    assert state(db) == SendState(last_due=T0 - timedelta(days=7), in_progress=T0)
    clock.now += timedelta(minutes=5)
    d.check_sends()
    assert send.calls == [T0, T0]
    assert state(db) == SendState(last_due=T0)


def test_send_with_pending_deliveries_is_retried(db: Database) -> None:
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7)).to_json())
    clock = Clock(T0 + timedelta(seconds=5))
    send = FakeSend(results=[SendSummary(issue=1, sent=2, pending=1)])
    d = Daemon(db, make_settings(), send=send, clock=clock)
    d.check_sends()
    assert state(db) == SendState(last_due=T0 - timedelta(days=7), in_progress=T0)
    d.check_sends()
    assert send.calls == [T0, T0]
    assert state(db) == SendState(last_due=T0)


def test_cron_send_at(db: Database) -> None:
    send = FakeSend()
    clock = Clock(datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC))
    d = Daemon(db, make_settings(newsletter_send_at="cron: * * * * *"), send=send, clock=clock)
    d.check_sends()
    clock.now += timedelta(minutes=1)
    d.check_sends()
    clock.now += timedelta(minutes=3)  # three sends missed: the latest runs, once
    d.check_sends()
    assert send.calls == [
        datetime(2026, 11, 23, 12, 1, tzinfo=UTC),
        datetime(2026, 11, 23, 12, 4, tzinfo=UTC),
    ]


def test_send_now_sends_up_to_now_and_the_schedule_goes_on(db: Database) -> None:
    db.set_meta(SEND_STATE_KEY, SendState(last_due=T0).to_json())
    send, clock = FakeSend(), Clock(T0 + timedelta(days=2))
    d = Daemon(db, make_settings(), send=send, clock=clock)
    d.sends.send_now()  # SIGUSR1 on a Monday
    assert send.calls == [T0 + timedelta(days=2)]
    assert state(db) == SendState(last_due=T0 + timedelta(days=2))
    d.check_sends()  # not again: the send is recorded like a scheduled one
    clock.now = T0 + timedelta(days=7, seconds=1)
    d.check_sends()  # the next Saturday's send, as scheduled
    assert send.calls == [T0 + timedelta(days=2), T0 + timedelta(days=7)]


def test_send_now_finishes_an_interrupted_send_first(db: Database) -> None:
    db.set_meta(
        SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7), in_progress=T0).to_json()
    )
    send, clock = FakeSend(), Clock(T0 + timedelta(hours=1))
    Daemon(db, make_settings(), send=send, clock=clock).sends.send_now()
    assert send.calls == [T0, T0 + timedelta(hours=1)]
    assert state(db) == SendState(last_due=T0 + timedelta(hours=1))


def test_send_now_waits_while_the_interrupted_send_is_not_done(db: Database) -> None:
    db.set_meta(
        SEND_STATE_KEY, SendState(last_due=T0 - timedelta(days=7), in_progress=T0).to_json()
    )
    send = FakeSend(results=[SendSummary(issue=1, sent=2, pending=1)])
    Daemon(db, make_settings(), send=send, clock=Clock(T0 + timedelta(hours=1))).sends.send_now()
    assert send.calls == [T0]  # no new issue while the last one still owes deliveries
    assert state(db) == SendState(last_due=T0 - timedelta(days=7), in_progress=T0)


def test_the_running_daemon_sends_at_the_schedules_times_and_when_asked(db: Database) -> None:
    send = FakeSend()
    d = Daemon(db, make_settings(), poll=FakePoll(), send=send)
    thread, codes = start(d)
    try:
        job = d._scheduler.get_job("send")
        assert job.trigger is d.sends.schedule.trigger  # newsletter.send_at's times
        d.send_now()
        wait_for(lambda: len(send.calls) == 1, what="the send asked for")
    finally:
        d.stop.set()
        thread.join(15)
    assert codes == [0]


# --- polling -------------------------------------------------------------------------------


def add_feed(db: Database, url: str, **values: Any) -> None:
    with db.session() as s:
        s.add(
            Feed(
                source_url=url,
                url=url,
                section="other",
                active=True,
                added_at=T0 - timedelta(days=30),
                status=values.pop("status", "ok"),
                error_count=0,
                polled_once=values.pop("polled_once", True),
                **values,
            )
        )


def due_at(db: Database) -> dict[str, datetime | None]:
    with db.session() as s:
        return {f.url: f.due_at for f in s.query(Feed)}


def test_overdue_polls_are_spread_at_start(db: Database) -> None:
    for k in range(20):
        add_feed(db, f"https://f{k}.example/feed", due_at=T0 - timedelta(hours=5, minutes=k))
    add_feed(db, "https://new.example/feed", polled_once=False)
    add_feed(db, "https://later.example/feed", due_at=T0 + timedelta(minutes=30))
    add_feed(db, "https://gone.example/feed", status="gone", due_at=T0 - timedelta(days=1))
    assert spread_overdue_polls(db, T0, timedelta(minutes=10)) == 20
    times = due_at(db)
    spread = [times[f"https://f{k}.example/feed"] for k in range(20)]
    assert all(t is not None and T0 <= t < T0 + timedelta(minutes=10) for t in spread)
    # The one waiting longest (k = 19) goes first.
    assert spread[19] == min(t for t in spread if t is not None)
    assert times["https://new.example/feed"] is None  # never polled: due at once
    assert times["https://later.example/feed"] == T0 + timedelta(minutes=30)


def test_long_failing_feed_is_logged(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    add_feed(
        db,
        "https://broken.example/feed",
        status="error",
        last_error="HTTP 500 Internal Server Error",
        failing_since=T0 - timedelta(days=8),
    )
    add_feed(db, "https://flaky.example/feed", status="error", failing_since=T0 - timedelta(days=2))
    d = Daemon(db, make_settings(), clock=Clock(T0))
    with caplog.at_level(logging.WARNING, logger="digest.daemon.service"):
        d._report_health()
        d._report_health()  # once a day, not every round
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "feed failing for 8 days: https://broken.example/feed (HTTP 500 Internal Server Error)"
    ]


# --- running -------------------------------------------------------------------------------


def start(d: Daemon) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(d.run()))
    thread.start()
    assert d.wait_ready(10)
    return thread, codes


def test_run_polls_repeatedly_refuses_a_second_daemon_and_stops(db: Database) -> None:
    poll = FakePoll()
    d = Daemon(db, make_settings(), poll=poll, send=FakeSend())
    thread, codes = start(d)
    try:
        wait_for(lambda: len(poll.calls) >= 3)
        assert all(c["due_only"] is True and c["stop"] is d.stop for c in poll.calls)
        with pytest.raises(LockedError, match="another digest daemon holds database"):
            Daemon(db, make_settings(), poll=FakePoll()).run()
    finally:
        began = time.monotonic()
        d.stop.set()
        thread.join(15)
    assert not thread.is_alive() and codes == [0]
    assert time.monotonic() - began < 3
    assert not d.abandoned
    # The lock is released: another daemon may start.
    d2 = Daemon(db, make_settings(), poll=FakePoll())
    thread2, codes2 = start(d2)
    d2.stop.set()
    thread2.join(15)
    assert codes2 == [0]


def test_stuck_job_is_abandoned_at_the_deadline(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "STOP_DEADLINE_S", 0.5)
    poll = FakePoll(hold=threading.Event())
    d = Daemon(db, make_settings(), poll=poll)
    thread, codes = start(d)
    try:
        wait_for(lambda: poll.calls)
        began = time.monotonic()
        d.stop.set()
        thread.join(15)
        assert codes == [0] and d.abandoned
        assert time.monotonic() - began < 2
    finally:
        assert poll.hold is not None
        poll.hold.set()  # the abandoned job may end now (the database untouched)


def test_web_endpoint_runs_in_a_thread_until_stop(db: Database) -> None:
    served: list[str] = []

    def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
        served.append(threading.current_thread().name)
        assert stop is not None
        stop.wait()
        served.append("stopped")

    d = Daemon(db, make_settings(web_enabled="true"), poll=FakePoll(), serve=serve)
    thread, codes = start(d)
    wait_for(lambda: served)
    d.stop.set()
    thread.join(15)
    assert codes == [0] and served == ["digest-web", "stopped"]


def test_web_endpoint_that_dies_stops_the_daemon(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
        raise SystemExit(1)  # what uvicorn does when the port is taken

    d = Daemon(db, make_settings(web_enabled="true"), poll=FakePoll(), serve=serve)
    thread = threading.Thread(target=d.run)
    thread.start()
    thread.join(15)
    assert d.exit_code == 1
    assert "the web endpoint on 127.0.0.1:8080 stopped" in caplog.text


def test_web_disabled_or_not_given_is_not_served(db: Database) -> None:
    served: list[str] = []

    def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
        served.append("served")

    for d in (
        Daemon(db, make_settings(web_enabled="false"), poll=FakePoll(), serve=serve),
        Daemon(db, make_settings(web_enabled="true"), poll=FakePoll()),  # no serve given
    ):
        thread, codes = start(d)
        d.stop.set()
        thread.join(15)
        assert codes == [0] and d._web is None
    assert served == []


def test_taken_web_port_stops_the_daemon_with_status_1(db: Database) -> None:
    import socket

    from digest.web import serve

    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        settings = make_settings(web_enabled="true", web_port=str(port))
        d = Daemon(db, settings, poll=FakePoll(), serve=serve)  # the real digest.web.serve
        began = time.monotonic()
        assert d.run() == 1
        assert time.monotonic() - began < 5
    finally:
        taken.close()


def test_a_poll_round_waits_for_a_poll_by_hand(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def busy(db: Database, settings: Settings, **kwargs: Any) -> PollSummary:
        raise LockedError("another poll holds database x: pid 7 on here")

    d = Daemon(db, make_settings(), poll=busy)
    with caplog.at_level(logging.INFO, logger="digest.daemon.service"):
        d._poll_round()
    assert "poll round skipped: another poll holds database x: pid 7 on here" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_setup_hints_name_what_is_left_to_set() -> None:
    from digest.daemon.startup import mail_setup_hints

    defaults = mail_setup_hints(make_settings())
    assert [h.split(" ")[0] for h in defaults] == [
        "smtp.host",
        "newsletter.from",
        "newsletter.base_url",
        "newsletter.postal_address",
    ]
    assert "CAN-SPAM" in defaults[-1]
    ready = make_settings(
        newsletter_from="Reading <reading@news.example.org>",
        newsletter_base_url="https://news.example.org",
        newsletter_postal_address="1 Main St, Springfield",
    )
    assert [h.split(" ")[0] for h in mail_setup_hints(ready)] == ["smtp.host"]


def test_a_sending_daemon_hints_at_the_postal_address_until_it_is_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from digest.daemon.startup import report
    from digest.issue.sendtimes import SendSchedule

    now = datetime(2026, 1, 5, tzinfo=UTC)
    for address, hinted in (("", True), ("1 Main St, Springfield", False)):
        settings = make_settings(smtp_host="127.0.0.1", newsletter_postal_address=address)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="digest.daemon.startup"):
            report(
                settings,
                SendSchedule.from_settings(settings),
                now,
                timedelta(minutes=6),
                SendState(),
                None,
            )
        assert ("newsletter.postal_address" in caplog.text) is hinted


def test_a_shorter_poll_interval_brings_feeds_forward_at_start(db: Database) -> None:
    from digest.ingest.feedstore import bring_forward

    for k in range(10):  # scheduled under an hourly interval
        add_feed(db, f"https://h{k}.example/feed", due_at=T0 + timedelta(minutes=50 + k))
    add_feed(
        db,
        "https://held.example/feed",
        status="backoff",
        due_at=T0 + timedelta(hours=2),
        next_fetch_at=T0 + timedelta(hours=2),  # Retry-After: not shortened
    )
    add_feed(db, "https://soon.example/feed", due_at=T0 + timedelta(seconds=10))
    # Scheduled under today's interval, 30 s x 1.1 with its jitter: stays where it is.
    add_feed(db, "https://jittered.example/feed", due_at=T0 + timedelta(seconds=33))
    assert bring_forward(db, T0, timedelta(seconds=30)) == 10
    times = due_at(db)
    moved = [times[f"https://h{k}.example/feed"] for k in range(10)]
    assert all(t is not None and T0 <= t < T0 + timedelta(seconds=30) for t in moved)
    assert times["https://held.example/feed"] == T0 + timedelta(hours=2)
    assert times["https://soon.example/feed"] == T0 + timedelta(seconds=10)
    assert times["https://jittered.example/feed"] == T0 + timedelta(seconds=33)


def test_a_restart_under_the_same_interval_moves_no_feed(db: Database) -> None:
    from digest.ingest.feedstore import bring_forward
    from digest.ingest.policy import schedule

    rng = random.Random(7)
    for k in range(200):  # as a poll leaves them: each due one interval away, jittered
        add_feed(db, f"https://h{k}.example/feed", due_at=schedule(T0, timedelta(hours=1), rng))
    assert bring_forward(db, T0 + timedelta(seconds=5), timedelta(hours=1)) == 0


def test_the_bounce_mailbox_is_read_every_interval_only_when_set(db: Database) -> None:
    from digest.bounces.mailbox import FetchSummary

    calls: list[float] = []

    def fake_fetch(db: Database, settings: Settings) -> FetchSummary:
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise DigestError("mailbox down")  # logged; the next round runs
        return FetchSummary()

    d = Daemon(db, make_settings(), poll=FakePoll(), send=FakeSend(), bounces=fake_fetch)
    thread, _codes = start(d)
    assert d._scheduler.get_job("bounces") is None  # no bounces.imap_url: never read
    assert d._scheduler.get_job("poll") is not None
    d.stop.set()
    thread.join(15)
    assert calls == []
    settings = make_settings(
        bounces_imap_url="imaps://u@mail.example.org/INBOX", bounces_interval="0.3s"
    )
    d = Daemon(db, settings, poll=FakePoll(), send=FakeSend(), bounces=fake_fetch)
    thread, _codes = start(d)
    try:
        wait_for(lambda: len(calls) >= 3)  # at start-up, then every 0.3 s, errors or not
    finally:
        d.stop.set()
        thread.join(15)
    assert calls[2] - calls[0] >= 0.5


def test_unconfirmed_sign_ups_are_pruned_at_start_and_then_hourly(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    calls: list[datetime] = []

    def prune(db: Database, now: datetime) -> int:
        calls.append(now)
        return 2

    clock = Clock(T0)
    d = Daemon(db, make_settings(), poll=FakePoll(), send=FakeSend(), prune=prune, clock=clock)
    thread, codes = start(d)
    try:
        wait_for(lambda: calls)
        assert calls == [T0]  # the daemon's clock
        assert d._scheduler.get_job("prune").trigger.interval == timedelta(hours=1)
    finally:
        d.stop.set()
        thread.join(15)
    assert codes == [0]
    assert "deleted 2 sign-ups left unconfirmed for a week" in caplog.text


def test_the_real_prune_deletes_only_week_old_pending_sign_ups(db: Database) -> None:
    from digest.delivery.consent import prune_unconfirmed, sign_up
    from digest.delivery.subscribers import add_subscriber, list_subscribers

    old, recent = T0 - timedelta(days=7, minutes=1), T0 - timedelta(days=6, hours=23)
    sign_up(db, "old@example.com", name=None, sections=None, now=old)
    sign_up(db, "recent@example.com", name=None, sections=None, now=recent)
    sign_up(db, "retried@example.com", name=None, sections=None, now=old)
    sign_up(db, "retried@example.com", name=None, sections=None, now=recent)  # a new try
    add_subscriber(db, "active@example.com", now=old)
    assert prune_unconfirmed(db, T0) == 1
    assert sorted(s.email for s in list_subscribers(db)) == [
        "active@example.com",
        "recent@example.com",
        "retried@example.com",
    ]


def test_the_first_start_says_it_polls_every_listed_feed(
    sqlite_url: str, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 24: the first `digest run` polled the 46 listed blogs with no line saying so."""
    write_opml(
        workdir / "feeds.opml",
        [("ML", f"Blog {k}", f"https://b{k}.example/feed") for k in range(3)],
    )
    db = Database(sqlite_url)
    d = Daemon(db, make_settings(), poll=FakePoll(), send=FakeSend(), clock=Clock(T0))
    with caplog.at_level(logging.INFO, logger="digest.daemon.startup"):
        thread, _codes = start(d)
        d.stop.set()
        thread.join(10)
    assert (
        "polling 3 new feeds for the first time now (what they hold already is stored as "
        "backlog, not sent); then each feed every 2s"
    ) in caplog.text
    caplog.clear()
    again = Daemon(db, make_settings(), poll=FakePoll(), send=FakeSend(), clock=Clock(T0))
    with db.session() as s:  # polled meanwhile
        s.execute(update(Feed).values(polled_once=True))
    with caplog.at_level(logging.INFO, logger="digest.daemon.startup"):
        thread, _codes = start(again)
        again.stop.set()
        thread.join(10)
    assert "for the first time" not in caplog.text
    db.dispose()
