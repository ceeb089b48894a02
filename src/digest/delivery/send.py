"""Sending an issue: record this week's issue, then deliver it to each subscriber once, one
rendering per section choice (the delivery log makes a run resumable; see deliverylog.py)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from sqlalchemy import select, update

from digest.config import Settings
from digest.delivery import deliverylog
from digest.delivery.dryrun import dry_run_summary
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import PreparedEmail, unsubscribe_url
from digest.delivery.sender import RenderFor, deliver_rows
from digest.delivery.subscribers import parse_address, secret
from digest.delivery.summary import SendSummary
from digest.delivery.tokens import make_token
from digest.errors import InputError
from digest.issue.plan import plan_issue, record_issue, render_plan, render_recorded
from digest.models import Issue, Subscriber
from digest.storage import Database
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
) -> SendSummary:
    """Build this week's issue (or the one ending at as_of), record it, deliver it."""
    plan = plan_issue(db, settings, as_of, now=now)
    summary = SendSummary(window_start=plan.window_start, window_end=plan.window_end)
    summary.issue = plan.number
    if plan.empty:
        summary.mode = "empty"
        return summary
    if to is not None or dry_run:
        choices: dict[frozenset[str] | None, RenderedEmail | None] = {}

        def render_for(sections: frozenset[str] | None) -> RenderedEmail | None:
            if sections not in choices:
                layout, rendered = render_plan(db, settings, plan, sections)
                choices[sections] = None if layout.empty else rendered
            return choices[sections]

        if to is not None:
            return send_test(db, settings, render_for, to, summary)
        return dry_run_summary(db, render_for, plan.issue_id, summary)
    recorded = record_issue(db, settings, plan)
    assert recorded is not None  # not empty
    summary.issue, summary.subject = recorded.number, recorded.subject
    if not settings.sending_enabled:
        with db.session() as s:
            s.execute(
                update(Issue)
                .where(Issue.id == recorded.id, Issue.status == IssueStatus.RECORDED)
                .values(status=IssueStatus.SKIPPED)
            )
        summary.mode = "off"
        return summary
    return deliver(
        db,
        settings,
        recorded.id,
        lambda sections: render_recorded(db, settings, recorded.id, sections),
        stop=stop,
    )


def deliver(
    db: Database,
    settings: Settings,
    issue_id: int,
    render_for: RenderFor,
    *,
    stop: threading.Event | None = None,
    transport: SmtpTransport | None = None,
    attempts: int = 4,
    backoff: float = 1.0,
) -> SendSummary:
    """Deliver a recorded issue to its subscribers, resuming where an earlier run stopped."""
    started = time.monotonic()
    summary = SendSummary()
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        if issue is None:
            raise InputError(f"no issue with id {issue_id}")
        summary.issue, summary.subject = issue.number, issue.subject
        summary.window_start, summary.window_end = issue.window_start, issue.window_end
    deliverylog.snapshot(db, issue_id)
    summary.resent = deliverylog.recover_in_flight(db, issue_id)
    rows = deliverylog.pending_rows(db, issue_id)
    summary.already = deliverylog.count(db, issue_id, DeliveryStatus.SENT)
    if rows:
        transports = [transport] if transport else _transports(settings, len(rows))
        try:
            deliver_rows(
                db, settings, rows, render_for, transports, summary, stop, attempts, backoff
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
    with db.session() as s:
        subscriber = s.scalar(select(Subscriber).where(Subscriber.email == address))
        token = (
            make_token(secret(db, settings), subscriber.id, subscriber.email)
            if subscriber is not None
            else "test-copy"  # not a subscriber: the link leads to the "not valid" page
        )
    raw = PreparedEmail(rendered, settings).render(
        to=address, unsubscribe_url=unsubscribe_url(settings, token)
    )
    with SmtpTransport(settings) as transport:
        transport.send_with_retry(raw, address)
    summary.sent = 1
    return summary
