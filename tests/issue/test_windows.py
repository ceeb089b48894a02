"""Where an issue's window starts and ends: a send by hand and the daemon's scheduled send agree
on the start (the first issue's too); a preview ends where a send at that moment would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.config import Settings
from digest.delivery.send import send_issue
from digest.issue.newsletter import Newsletter, ending, previewed
from digest.issue.plan import plan_issue
from digest.storage import Database
from tests.issue_helpers import add_feed, add_post

SATURDAY = datetime(2026, 8, 15, 8, 0, tzinfo=UTC)  # a send time (saturday 08:00)
THURSDAY = SATURDAY - timedelta(days=2, hours=3)


def test_a_send_by_hand_and_the_scheduled_send_start_the_first_issue_alike(db: Database) -> None:
    feed = add_feed(db, "Blog")
    add_post(db, feed, "last Sunday", date=SATURDAY - timedelta(days=6))
    add_post(db, feed, "Wednesday", date=THURSDAY - timedelta(days=1))
    settings = Settings()
    by_hand = send_issue(db, settings, dry_run=True, now=THURSDAY)
    scheduled = send_issue(db, settings, as_of=SATURDAY, dry_run=True, now=SATURDAY)
    assert by_hand.window_start == scheduled.window_start == SATURDAY - timedelta(days=7)
    assert by_hand.window_end == THURSDAY and scheduled.window_end == SATURDAY
    # The preview at that moment is the send's issue, and says how it ends.
    plan = plan_issue(db, settings, previewed(Newsletter.of(settings), None, THURSDAY))
    assert (plan.window_start, plan.window_end) == (by_hand.window_start, by_hand.window_end)
    assert plan.ending is not None and plan.ending.how == "now"
    described = plan.ending.describe(Newsletter.of(settings).timezone)
    assert "as `digest send` run now would" in described
    assert {p.title for p in plan.posts} == {"last Sunday", "Wednesday"}


def test_an_as_of_never_ends_a_send_after_now_but_a_preview_may_look_ahead() -> None:
    newsletter = Newsletter.of(Settings())
    ahead = THURSDAY + timedelta(days=9)
    assert ending(newsletter, ahead, THURSDAY).end == THURSDAY
    assert previewed(newsletter, ahead, THURSDAY).end == ahead
    assert ending(newsletter, None, THURSDAY).scheduled == SATURDAY
