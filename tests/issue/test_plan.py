"""Which posts go into which issue: each selection rule, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from digest.config import Settings
from digest.errors import InputError
from digest.issue.archive import web_version
from digest.issue.curation import curate, set_intro
from digest.issue.plan import (
    parse_as_of,
    plan_issue,
    record,
    record_issue,
    render_plan,
    render_recorded,
    render_recording,
)
from digest.storage import Database
from digest.types import ML, SYSTEMS, UNSUBSCRIBE_PLACEHOLDER, Verdict
from tests.issue_helpers import SAT, add_feed, add_post

WEEK = timedelta(days=7)


def titles(plan: object) -> set[str]:
    return {p.title for p in plan.posts}  # type: ignore[attr-defined]


def test_first_issue_covers_the_week_before(db: Database) -> None:
    feed = add_feed(db, "Blog A")
    add_post(db, feed, "in", date=SAT - timedelta(days=2))
    add_post(db, feed, "edge", date=SAT)  # the window's end is included
    add_post(db, feed, "old", date=SAT - WEEK - timedelta(hours=1))
    plan = plan_issue(db, Settings(), SAT)
    assert (plan.number, plan.window_start, plan.window_end) == (1, SAT - WEEK, SAT)
    assert titles(plan) == {"in", "edge"}


def test_a_post_is_never_in_two_issues(db: Database) -> None:
    feed = add_feed(db, "Blog A")
    add_post(db, feed, "week 1", date=SAT - timedelta(days=1))
    first = record_issue(db, Settings(), plan_issue(db, Settings(), SAT))
    assert first is not None and first.number == 1
    # The next issue starts where this one ended and leaves its post out.
    add_post(db, feed, "week 2", date=SAT + timedelta(days=3))
    second = plan_issue(db, Settings(), SAT + WEEK)
    assert second.window_start == SAT and second.number == 2
    assert titles(second) == {"week 2"}
    # Recording the same window again returns the same issue and claims nothing new.
    again = record_issue(db, Settings(), plan_issue(db, Settings(), SAT))
    assert again is not None and again.id == first.id


def test_a_late_post_is_caught_by_the_next_issue(db: Database) -> None:
    feed = add_feed(db, "Blog A")
    add_post(db, feed, "on time", date=SAT - timedelta(days=1))
    record_issue(db, Settings(), plan_issue(db, Settings(), SAT))
    # The feed was down: a post dated before the last send shows up two days after it.
    add_post(db, feed, "late", date=SAT - timedelta(days=2), first_seen=SAT + timedelta(days=2))
    # Too late: dated more than 7 days before the window.
    add_post(db, feed, "ancient", date=SAT - timedelta(days=9), first_seen=SAT + timedelta(days=2))
    assert titles(plan_issue(db, Settings(), SAT + WEEK)) == {"late"}


def test_a_new_feeds_backlog_stays_out(db: Database) -> None:
    feed = add_feed(db, "New blog", added=SAT - timedelta(days=1))
    seen = SAT - timedelta(days=1)
    add_post(db, feed, "this week", date=SAT - timedelta(days=2), first_seen=seen, first_poll=True)
    add_post(
        db, feed, "last month", date=SAT - timedelta(days=30), first_seen=seen, first_poll=True
    )
    add_post(db, feed, "last week", date=SAT - timedelta(days=9), first_seen=seen, first_poll=True)
    add_post(db, feed, "undated backlog", date=None, first_seen=seen, first_poll=True)
    # An undated entry seen in a later poll is new: its first sighting is its date.
    add_post(db, feed, "undated new", date=None, first_seen=seen + timedelta(hours=3))
    assert titles(plan_issue(db, Settings(), SAT)) == {"this week", "undated new"}


def test_a_future_date_does_not_come_early(db: Database) -> None:
    feed = add_feed(db, "Blog A")
    add_post(db, feed, "next week", date=SAT + timedelta(days=3), first_seen=SAT - timedelta(1))
    assert titles(plan_issue(db, Settings(), SAT)) == set()
    assert titles(plan_issue(db, Settings(), SAT + WEEK)) == {"next week"}


def test_an_empty_week_records_nothing(db: Database) -> None:
    add_feed(db, "Quiet blog")
    plan = plan_issue(db, Settings(), SAT)
    assert plan.empty
    assert record_issue(db, Settings(), plan) is None


def test_the_same_article_from_two_feeds_appears_once(db: Database) -> None:
    a, b = add_feed(db, "Blog A"), add_feed(db, "Aggregator", section="other")
    add_post(db, a, "Shared", date=SAT - timedelta(1), link="https://x.example/p")
    add_post(db, b, "Shared (copy)", date=SAT - timedelta(1), link="https://x.example/p")
    plan = plan_issue(db, Settings(), SAT)
    assert titles(plan) == {"Shared"} and len(plan.duplicate_ids) == 1
    issue = record_issue(db, Settings(), plan)
    assert issue is not None
    # The copy is claimed too, so it does not surface next week.
    assert titles(plan_issue(db, Settings(), SAT + WEEK)) == set()


def test_inactive_feeds_are_left_out(db: Database) -> None:
    gone = add_feed(db, "Removed blog", active=False)
    add_post(db, gone, "from a removed feed", date=SAT - timedelta(1))
    assert plan_issue(db, Settings(), SAT).empty


def test_an_old_week_renders_again_from_what_the_database_holds(db: Database) -> None:
    feed = add_feed(db, "Blog A")
    add_post(db, feed, "week 1", date=SAT - timedelta(days=1))
    add_post(db, feed, "week 2", date=SAT + timedelta(days=1))
    record_issue(db, Settings(), plan_issue(db, Settings(), SAT + WEEK))  # took both
    # Week 1 was never recorded; rendering it again shows its own post only.
    assert titles(plan_issue(db, Settings(), SAT)) == {"week 1"}


def test_sections_and_recorded_renders(db: Database) -> None:
    ml, sys = add_feed(db, "ML blog", ML), add_feed(db, "Sys blog", SYSTEMS)
    add_post(db, ml, "Attention", date=SAT - timedelta(1))
    add_post(db, sys, "Consensus", date=SAT - timedelta(2))
    issue = record_issue(db, Settings(), plan_issue(db, Settings(), SAT))
    assert issue is not None
    both = render_recorded(db, Settings(), issue.id)
    assert both is not None
    assert both.html.index("Machine Learning") < both.html.index("Systems")
    only_sys = render_recorded(db, Settings(), issue.id, frozenset({SYSTEMS}))
    assert only_sys is not None
    assert "Consensus" in only_sys.text and "Attention" not in only_sys.text
    assert only_sys.subject == "Weekend Reading #1: Consensus"  # its own lead
    assert render_recorded(db, Settings(), issue.id, frozenset({"other"})) is None
    assert UNSUBSCRIBE_PLACEHOLDER in both.html
    web = web_version(db, Settings(), issue.number)
    assert web is not None and UNSUBSCRIBE_PLACEHOLDER not in web and "Consensus" in web


def test_a_send_renders_what_the_recorded_issue_renders(db: Database) -> None:
    """The send renders from the plan it recorded (record): the same bytes as rendering the
    recorded issue from the database, for every section choice, picks, notes, skips and a
    duplicate included."""
    ml, sys = add_feed(db, "ML blog", ML), add_feed(db, "Sys blog", SYSTEMS)
    other = add_feed(db, "Other blog", "other")
    for day in range(1, 6):
        add_post(db, ml, f"Attention {day}", date=SAT - timedelta(days=day), words=300 * day)
        add_post(db, sys, f"Consensus {day}", date=SAT - timedelta(days=day, hours=3))
    add_post(db, other, "Copy", date=SAT - timedelta(2), link="https://posts.example/same")
    add_post(db, sys, "Same", date=SAT - timedelta(3), link="https://posts.example/same")
    add_post(db, other, "Skipped", date=SAT - timedelta(2), link="https://posts.example/skip")
    now = SAT - timedelta(hours=1)
    curate(db, "https://posts.example/skip", Verdict.SKIP, now)
    curate(db, "https://posts.example/same", Verdict.PICK, now, note="Read *this*.")
    set_intro(db, "A week of **consensus**.")
    settings = Settings()  # four picks
    recording = record(db, settings, plan_issue(db, settings, SAT))
    assert recording is not None and recording.plan is not None  # it claimed every post
    for sections in (None, frozenset({ML}), frozenset({SYSTEMS}), frozenset({"other", ML})):
        mine = render_recording(db, settings, recording, sections)
        assert mine is not None
        assert mine == render_recorded(db, settings, recording.issue.id, sections)
    assert render_recording(db, settings, recording, frozenset({"nothing"})) is None


def test_a_week_whose_posts_later_issues_took_renders_from_the_database(db: Database) -> None:
    feed = add_feed(db, "Blog A")
    add_post(db, feed, "week 1", date=SAT - timedelta(days=1))
    add_post(db, feed, "late", date=SAT - timedelta(days=2), first_seen=SAT + timedelta(days=2))
    later = record_issue(db, Settings(), plan_issue(db, Settings(), SAT + WEEK))
    assert later is not None and later.post_count == 1  # the late post
    plan = plan_issue(db, Settings(), SAT)  # the week before, sent by hand afterwards
    assert titles(plan) == {"week 1", "late"}
    recording = record(db, Settings(), plan)
    assert recording is not None and recording.plan is None  # claimed one of two: load it
    again = render_recording(db, Settings(), recording)
    assert again is not None and "late" not in again.text
    assert again == render_recorded(db, Settings(), recording.issue.id)


def test_planned_posts_carry_texts_only_where_planning_reads_them(db: Database) -> None:
    """A plan leaves its posts' texts out (40,000 of them cost a send 72 MB), but for a post
    of links alone and one whose length no one stored; rendering reads the texts of the
    posts an item may show: the issue is the one rendered from every post's text."""
    feed = add_feed(db, "Blog A")
    essay = "An essay about consensus. " * 40
    add_post(db, feed, "Essay", date=SAT - timedelta(days=1), text=essay)
    add_post(db, feed, "Links", date=SAT - timedelta(days=2), text="https://elsewhere.example/a")
    add_post(db, feed, "Unmeasured", date=SAT - timedelta(days=3), text="Few words.", words=0)
    plan = plan_issue(db, Settings(), SAT)
    texts = {p.title: p.text for p in plan.posts}
    assert texts == {
        "Essay": "",
        "Links": "https://elsewhere.example/a",
        "Unmeasured": "Few words.",
    }
    full = replace(plan, posts=tuple(replace(p, text=p.text or essay) for p in plan.posts))
    layout, rendered = render_plan(db, Settings(), plan)
    assert "An essay about consensus." in rendered.text
    assert (layout, rendered) == render_plan(db, Settings(), full)


def test_the_preview_carries_a_feed_health_note(db: Database) -> None:
    feed = add_feed(db, "Broken blog")
    add_post(db, feed, "p", date=SAT - timedelta(1))
    from digest.ingest.health import failing_note
    from digest.models import Feed

    with db.session() as s:
        row = s.get(Feed, feed)
        assert row is not None
        row.failing_since, row.last_error = SAT - timedelta(days=9), "HTTP 500"
    plan = plan_issue(db, Settings(), SAT)
    _, preview = render_plan(db, Settings(), plan, health=failing_note(db, SAT))
    _, copy = render_plan(db, Settings(), plan)
    assert "Broken blog: failing since" in preview.text and "HTTP 500" in preview.html
    assert "failing since" not in copy.text + copy.html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-10", datetime(2026, 1, 10, 22, 59, 59, tzinfo=UTC)),  # end of day, Berlin
        ("2026-01-10T08:00", datetime(2026, 1, 10, 7, 0, tzinfo=UTC)),
        ("2026-01-10T08:00Z", datetime(2026, 1, 10, 8, 0, tzinfo=UTC)),
        ("2026-01-10T08:00+02:00", datetime(2026, 1, 10, 6, 0, tzinfo=UTC)),
    ],
)
def test_parse_as_of(text: str, expected: datetime) -> None:
    settings = Settings().replace(newsletter={"timezone": "Europe/Berlin"})
    assert parse_as_of(text, settings) == expected


def test_parse_as_of_refuses_nonsense() -> None:
    with pytest.raises(InputError, match="ISO 8601"):
        parse_as_of("next saturday", Settings())


def test_a_teasers_length_is_unknown_until_its_page_is_read(db: Database) -> None:
    from sqlalchemy import update

    from digest.models import Post

    feed = add_feed(db, "Summaries only")
    post = add_post(db, feed, "An essay", date=SAT - timedelta(1), words=125, teaser=True)
    add_post(db, feed, "A note", date=SAT - timedelta(2), words=230)
    [essay] = [p for p in plan_issue(db, Settings(), SAT).posts if p.id == post]
    assert essay.words is None  # not the summary's 125 words: "1 min read" would mislead
    with db.session() as s:  # its page could not be read (a 404): still unknown
        s.execute(update(Post).where(Post.id == post).values(page_words=0))
    assert next(p for p in plan_issue(db, Settings(), SAT).posts if p.id == post).words is None
    with db.session() as s:  # the page came later: its real length
        s.execute(update(Post).where(Post.id == post).values(page_words=13_000))
    assert next(p for p in plan_issue(db, Settings(), SAT).posts if p.id == post).words == 13_000
