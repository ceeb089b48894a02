"""Applying reports to subscribers: whom (VERP tag, Message-ID, address), once, and how."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from digest.bounces.apply import Outcome, apply_report
from digest.bounces.events import issue_rates, list_events
from digest.config import Settings
from digest.delivery import counts
from digest.delivery.subscribers import add_subscriber, list_subscribers
from digest.delivery.verp import make_tag
from digest.models import Delivery
from digest.storage import Database, utcnow
from digest.types import BounceKind, BounceReport, DeliveryStatus

KEY = "test-key"
SETTINGS = Settings().replace(
    newsletter={"bounce_address": "bounces@news.example.org", "secret_key": KEY}
)
# Reports found by the address they name: believed only with VERP off (or from a webhook).
UNTAGGED = SETTINGS.replace(newsletter={"verp": False})
HARD, SOFT, COMPLAINT = BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT


def report(
    kind: BounceKind, *, to: str = "", rcpt: str = "", mid: str | None = None
) -> BounceReport:
    return BounceReport(
        kind,
        "5.1.1" if kind == HARD else "x",
        recipients=(rcpt,) if rcpt else (),
        diagnostic="550 5.1.1 no such user",
        message_id=mid,
        addressed_to=(to,) if to else (),
    )


def apply(
    db: Database,
    r: BounceReport,
    identity: str,
    now: datetime | None = None,
    settings: Settings = UNTAGGED,
    authenticated: bool = False,
) -> Outcome:
    return apply_report(
        db, settings, KEY, r, source="imap", identity=identity, now=now, authenticated=authenticated
    )


def status(db: Database) -> dict[str, str]:
    return {s.email: str(s.status) for s in list_subscribers(db)}


def sent_issue(db: Database, *emails: str) -> int:
    """An issue delivered to these subscribers, Message-ID <n.EMAIL>."""
    from tests.delivery.test_send import new_issue

    issue = new_issue(db)
    with db.session() as s:
        for email in emails:
            sid = add_subscriber(db, email)[0].id
            s.add(
                Delivery(
                    issue_id=issue, subscriber_id=sid, status=DeliveryStatus.SENT,
                    attempts=1, message_id=f"<{issue}.{email}>", updated_at=utcnow(),
                    sent_at=utcnow() - timedelta(hours=1),
                )
            )  # fmt: skip
        counts.add(s, issue, {"sent": len(emails)})  # as the delivery log counts them
    return issue


def test_a_valid_tag_wins_and_a_forged_one_changes_nothing(db: Database) -> None:
    issue = sent_issue(db, "ann@example.com", "bob@example.com")
    ann = list_subscribers(db)[0]
    good = f"bounces+{make_tag(KEY, ann.id, ann.email, issue)}@news.example.org"
    forged = f"bounces+{make_tag('not-the-key', ann.id, ann.email, issue)}@news.example.org"
    # The report names bob, but a forged tag drops it whole: bob is not touched.
    out = apply(db, report(HARD, to=forged, rcpt="bob@example.com"), "r1", settings=SETTINGS)
    assert out.forged and status(db) == {"ann@example.com": "active", "bob@example.com": "active"}
    assert list_events(db) == []
    out = apply(db, report(HARD, to=good, rcpt="someone-else@example.net"), "r2", settings=SETTINGS)
    assert out.bounced == ["ann@example.com"]
    assert status(db) == {"ann@example.com": "bounced", "bob@example.com": "active"}
    [event] = list_events(db)
    assert (event.email, event.kind, event.status_code) == ("ann@example.com", HARD, "5.1.1")
    assert event.issue == issue_rates(db)[0].number
    assert event.diagnostic == "550 5.1.1 no such user"


def test_by_message_id_then_by_address(db: Database) -> None:
    issue = sent_issue(db, "ann@example.com", "bob@example.com", "cy@example.com")
    apply(db, report(COMPLAINT, mid=f"<{issue}.bob@example.com>", rcpt="redacted@x.example"), "c")
    apply(db, report(HARD, rcpt="CY@example.com".lower()), "h")
    assert status(db) == {
        "ann@example.com": "active", "bob@example.com": "complained", "cy@example.com": "bounced"
    }  # fmt: skip
    [rates] = issue_rates(db)
    assert (rates.sent, rates.hard, rates.complaints) == (3, 1, 1)
    # The address-only report was linked to the issue last delivered to cy.
    assert {e.email: e.issue for e in list_events(db)}["cy@example.com"] == rates.number


def test_with_verp_on_an_untagged_report_is_believed_only_from_a_webhook(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Anybody can write to the bounce address: naming a subscriber there must not be enough
    to unsubscribe them while every real bounce of ours comes back tagged."""
    issue = sent_issue(db, "ann@example.com", "bob@example.com", "cy@example.com")
    with caplog.at_level(logging.WARNING):
        out = apply(db, report(COMPLAINT, rcpt="ann@example.com"), "forged", settings=SETTINGS)
        out2 = apply(
            db, report(HARD, rcpt="bob@example.com", mid="<guess@x>"), "f2", settings=SETTINGS
        )
    assert out.matched == out2.matched == [] and list_events(db) == []
    assert "neither a VERP tag nor one of our Message-IDs ignored" in caplog.text
    # Our own Message-ID (not guessable) still links a complaint whose address is redacted.
    mid = f"<{issue}.cy@example.com>"
    apply(db, report(COMPLAINT, mid=mid, rcpt="redacted@x.example"), "c", settings=SETTINGS)
    # A webhook has checked the service's signature: the address it names is believed.
    apply(db, report(HARD, rcpt="bob@example.com"), "ses", settings=SETTINGS, authenticated=True)
    assert status(db) == {
        "ann@example.com": "active", "bob@example.com": "bounced", "cy@example.com": "complained"
    }  # fmt: skip


def test_the_same_report_twice_counts_once(db: Database) -> None:
    sent_issue(db, "ann@example.com")
    for _ in range(6):
        apply(db, report(SOFT, rcpt="ann@example.com"), "same")
    assert len(list_events(db)) == 1 and status(db) == {"ann@example.com": "active"}


def test_soft_bounces_bounce_at_the_limit_within_the_window(db: Database) -> None:
    sent_issue(db, "ann@example.com")
    now = utcnow()
    # Four old ones, outside the 30-day window, then four recent: not yet.
    for n in range(4):
        apply(db, report(SOFT, rcpt="ann@example.com"), f"old{n}", now=now - timedelta(days=40))
    for n in range(4):
        apply(db, report(SOFT, rcpt="ann@example.com"), f"new{n}", now=now)
    assert status(db) == {"ann@example.com": "active"}
    out = apply(db, report(SOFT, rcpt="ann@example.com"), "fifth", now=now)
    assert out.bounced == ["ann@example.com"]


def test_a_report_about_nobody_and_an_auto_reply_do_nothing(db: Database) -> None:
    sent_issue(db, "ann@example.com")
    assert apply(db, report(HARD, rcpt="stranger@example.net"), "x").matched == []
    assert apply(db, BounceReport(None, "auto-reply", ignored=True), "y").matched == []
    assert list_events(db) == [] and status(db) == {"ann@example.com": "active"}


def test_a_complaint_warns_when_the_rate_crosses(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    sent_issue(db, "ann@example.com", "bob@example.com")
    with caplog.at_level(logging.WARNING):
        apply(db, report(COMPLAINT, rcpt="ann@example.com"), "c1")
    assert "complaint rate 50.00% is over 0.1%" in caplog.text
