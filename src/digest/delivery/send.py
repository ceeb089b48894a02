"""Sending an issue: record this week's issue, then deliver it to each subscriber once, one
rendering per section choice (the delivery log makes a run resumable; see deliverylog.py)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from sqlalchemy import select, update

from digest.config import Settings
from digest.delivery import deliverylog, preflight
from digest.delivery.dryrun import RecipientFn, dry_run_summary
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import PreparedEmail, preferences_url, unsubscribe_url
from digest.delivery.sender import RenderFor, deliver_rows
from digest.delivery.subscribers import parse_address
from digest.delivery.summary import SendSummary
from digest.delivery.tokens import PREFERENCES, make_token, signing_key
from digest.delivery.verp import envelope_sender, feedback_id
from digest.errors import InputError
from digest.issue.newsletter import Ending, Newsletter, ending
from digest.issue.plan import (
    IssuePlan,
    RecordedIssue,
    last_issue_end,
    plan_issue,
    record,
    render_plan,
    render_recorded,
    render_recording,
)
from digest.locks import SENDER, Held, holding
from digest.models import Issue, Subscriber
from digest.storage import Database, utcnow
from digest.types import DeliveryStatus, IssueStatus, RenderedEmail

log = logging.getLogger(__name__)


def send_issue(
    db: Database,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    to: str | None = None,
    stop: threading.Event | None = None,
    now: datetime | None = None,
    wait: bool = False,
    each_recipient: RecipientFn | None = None,
) -> SendSummary:
    """Build this week's issue (or the one ending at as_of), record it, deliver it.

    One send at a time per database (the daemon's or another `digest send`): LockedError
    names the one running, unless ``wait``. A test copy (``to``) and a dry run record
    nothing and need no lock; a dry run hands each active subscriber, with what they would
    get, to ``each_recipient``.
    """
    # The issue ends at as_of (the daemon's: the send time that fell due), else now: an issue
    # sent by hand early in the week ends when it is sent, so the next one starts there.
    # Windows never overlap, and posts of the days between wait for the next issue.
    newsletter = Newsletter.of(settings)  # what issue/ reads of the settings, read once
    end = ending(newsletter, as_of, now or utcnow())
    if to is not None or dry_run:
        return _try_out(db, settings, newsletter, end, to, each_recipient)
    with holding(db, SENDER, wait=wait, stop=stop) as held:
        # held.stop: the caller's stop, or the lock lost (then stop before another message:
        # the newcomer sends again what we left 'sending').
        resumed = _finish_unfinished(db, settings, newsletter, held)
        if resumed is None:
            return _send_new(db, settings, newsletter, end, held)
        # The summary says what this run did: that issue's deliveries, then what came next.
        if not (resumed.pending or held.lost or resumed.window_end == end.end):
            resumed.then = _send_new(db, settings, newsletter, end, held)
        return _lost(resumed, held.lost)  # not done, or it was the issue asked for


def _send_new(
    db: Database, settings: Settings, newsletter: Newsletter, end: Ending, held: Held
) -> SendSummary:
    """The issue ending at ``end``: recorded and delivered, or why there is none to send."""
    plan = plan_issue(db, newsletter, end)
    last = last_issue_end(db)
    if plan.issue_id is None and last is not None and end.end <= last:
        return _covered(plan, last)
    if plan.empty:
        return _empty(plan)
    recording = record(db, newsletter, plan)
    assert recording is not None  # not empty
    if not settings.sending_enabled:
        return _recorded_only(db, recording.issue)

    def render_for(sections: frozenset[str] | None) -> RenderedEmail | None:
        return render_recording(db, newsletter, recording, sections)

    summary = deliver(
        db, settings, recording.issue.id, render_for, stop=held.stop, claimed_before=_cutoff(held)
    )
    return _lost(summary, held.lost)


def _cutoff(held: Held) -> datetime | None:
    """The 'sending' rows to send again: all when the lock's previous holder is known to be
    gone (or there was none), else only those claimed IN_FLIGHT_GRACE ago."""
    return None if held.predecessor_dead else utcnow() - deliverylog.IN_FLIGHT_GRACE


def _lost(summary: SendSummary, why: str | None) -> SendSummary:
    """The summary of a send that lost its lock says so: it stopped, and why."""
    if why is not None:
        summary.aborted = why
    return summary


def _finish_unfinished(
    db: Database, settings: Settings, newsletter: Newsletter, held: Held
) -> SendSummary | None:
    """An issue recorded and not yet delivered to everyone (a crash, a stop, a failing
    server): its deliveries first, before any new issue."""
    if not settings.sending_enabled:
        return None
    with db.session() as s:
        issue_id = s.scalar(
            select(Issue.id).where(Issue.status == IssueStatus.RECORDED).order_by(Issue.number)
        )
    if issue_id is None:
        return None
    summary = _deliver_recorded(db, settings, newsletter, issue_id, held)
    summary.mode = "resumed"
    return summary


def _deliver_recorded(
    db: Database,
    settings: Settings,
    newsletter: Newsletter,
    issue_id: int,
    held: Held,
) -> SendSummary:
    def render_for(sections: frozenset[str] | None) -> RenderedEmail | None:
        return render_recorded(db, newsletter, issue_id, sections)

    return deliver(db, settings, issue_id, render_for, stop=held.stop, claimed_before=_cutoff(held))


def _try_out(
    db: Database,
    settings: Settings,
    newsletter: Newsletter,
    end: Ending,
    to: str | None,
    each_recipient: RecipientFn | None,
) -> SendSummary:
    """A test copy to ``to``, or else a dry run: nothing recorded either way."""
    plan = plan_issue(db, newsletter, end)
    if plan.empty:
        return _empty(plan)
    summary = SendSummary(window_start=plan.window_start, window_end=plan.window_end)
    summary.issue, summary.sending = plan.number, settings.sending_enabled
    choices: dict[frozenset[str] | None, RenderedEmail | None] = {}

    def render_for(sections: frozenset[str] | None) -> RenderedEmail | None:
        if sections not in choices:
            layout, rendered = render_plan(db, newsletter, plan, sections)
            choices[sections] = None if layout.empty else rendered
        return choices[sections]

    if to is not None:
        return send_test(db, settings, render_for, to, summary)
    return dry_run_summary(db, render_for, plan.issue_id, summary, each_recipient)


def _covered(plan: IssuePlan, last: datetime) -> SendSummary:
    """The window asked for ends before the last issue's: those posts went out already."""
    summary = SendSummary(window_start=plan.window_start, window_end=plan.window_end)
    summary.mode, summary.covered_until = "covered", last
    return summary


def _empty(plan: IssuePlan) -> SendSummary:
    summary = SendSummary(window_start=plan.window_start, window_end=plan.window_end)
    summary.issue, summary.mode = plan.number, "empty"
    return summary


def _recorded_only(db: Database, recorded: RecordedIssue) -> SendSummary:
    """Sending is off: the issue stays recorded (the archive shows it), mailed to no one."""
    with db.session() as s:
        s.execute(
            update(Issue)
            .where(Issue.id == recorded.id, Issue.status == IssueStatus.RECORDED)
            .values(status=IssueStatus.SKIPPED)
        )
    summary = SendSummary(mode="off", issue=recorded.number, subject=recorded.subject)
    summary.window_start, summary.window_end = recorded.window_start, recorded.window_end
    return summary


def deliver(
    db: Database,
    settings: Settings,
    issue_id: int,
    render_for: RenderFor,
    *,
    stop: threading.Event | None = None,
    claimed_before: datetime | None = None,
    transport: SmtpTransport | None = None,
    attempts: int = 4,
    backoff: float = 1.0,
) -> SendSummary:
    """Deliver a recorded issue to its subscribers, resuming where an earlier run stopped.
    Rows left 'sending' go again: all of them, or with ``claimed_before`` those claimed before
    it (send_issue: the lock's previous holder may still live; see deliverylog)."""
    started = time.monotonic()
    summary = SendSummary()
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        if issue is None:
            raise InputError(f"no issue with id {issue_id}")
        summary.issue, summary.subject = issue.number, issue.subject
        ids = (issue.id, issue.number)
        summary.window_start, summary.window_end = issue.window_start, issue.window_end
    deliverylog.snapshot(db, issue_id)
    in_flight = deliverylog.recover_in_flight(db, issue_id, claimed_before)
    summary.resent, summary.waiting = in_flight.resent, in_flight.waiting
    to_send = deliverylog.count(db, issue_id, DeliveryStatus.PENDING)
    summary.already = deliverylog.count(db, issue_id, DeliveryStatus.SENT)
    if to_send:
        rows = deliverylog.pending_rows(db, issue_id)  # read a page at a time as it goes
        preflight.warn(settings)
        transports = [transport] if transport else _transports(settings, to_send)
        try:
            deliver_rows(
                db, settings, rows, render_for, transports, summary, stop, attempts, backoff, ids
            )
        finally:
            if transport is None:
                for t in transports:
                    t.close()
    summary.pending = sum(
        deliverylog.count(db, issue_id, status)
        for status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
    )
    if summary.pending == 0:
        with db.session() as s:
            s.execute(update(Issue).where(Issue.id == issue_id).values(status=IssueStatus.SENT))
    summary.seconds = time.monotonic() - started
    log.info("deliveries of %s", summary.line())  # the caller logs the send event itself
    return summary


def _transports(settings: Settings, rows: int) -> list[SmtpTransport]:
    """smtp.connections transports (no more than there are messages), sharing smtp.rate."""
    n = max(1, min(settings.smtp.connections, rows))
    if settings.smtp.rate:
        settings = settings.replace(smtp={"rate": settings.smtp.rate / n})
    return [SmtpTransport(settings) for _ in range(n)]


def send_test(
    db: Database, settings: Settings, render_for: RenderFor, to: str, summary: SendSummary
) -> SendSummary:
    """One copy of the whole issue to one address; records nothing."""
    address, _name = parse_address(to)
    summary.mode, summary.test_to = "test", address
    rendered = render_for(None)
    assert rendered is not None  # the plan is not empty
    summary.subject = rendered.subject
    # The key first: storing a new one takes SQLite's write lock, which a session held
    # open around it would wait for until "database is locked".
    key = signing_key(db, settings)
    with db.session() as s:
        subscriber = s.scalar(select(Subscriber).where(Subscriber.email == address))
        # Not a subscriber: the links lead to the "not valid" pages.
        token, own = "test-copy", "test-copy"
        if subscriber is not None:
            token = make_token(key, subscriber.id, subscriber.email)
            own = make_token(key, subscriber.id, subscriber.email, PREFERENCES)
        subscriber_id = subscriber.id if subscriber is not None else None
    raw = PreparedEmail(rendered, settings, feedback_id=feedback_id(settings, None)).render(
        to=address,
        unsubscribe_url=unsubscribe_url(settings, token),
        preferences_url=preferences_url(settings, own),
    )
    sender = envelope_sender(settings, key, subscriber_id, address, None)
    with SmtpTransport(settings) as transport:
        transport.send_with_retry(raw, address, sender=sender)
    summary.sent = 1
    return summary
