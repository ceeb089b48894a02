"""Feed rules as an issue applies them: pure."""

from __future__ import annotations

from digest.issue.rules import apply_rules
from digest.types import ML, SYSTEMS, FeedRules
from tests.issue.test_render import post


def test_no_rules_no_change() -> None:
    p = post(1, 1, title="Sponsored")
    assert apply_rules(p, "sponsored", FeedRules()) is p


def test_skip_matches_the_title_or_a_category() -> None:
    rules = FeedRules(skip="(?i)sponsored|weeknotes")
    assert apply_rules(post(1, 1, title="Weeknotes 12"), None, rules) is None
    assert apply_rules(post(2, 1, title="Paid"), "ai\nSponsored", rules) is None
    assert apply_rules(post(3, 1, title="An essay"), "ai", rules) is not None


def test_section_if_moves_posts_by_category() -> None:
    rules = FeedRules(section=SYSTEMS, section_if="(?i)^databases$")
    moved = apply_rules(post(1, 1, ML), "ml\nDatabases", rules)
    kept = apply_rules(post(2, 1, ML), "ml", rules)
    assert moved is not None and moved.section == SYSTEMS
    assert kept is not None and kept.section == ML


def test_a_pattern_stored_broken_is_ignored() -> None:
    kept = post(1, 1, ML, title="(")  # a title the broken pattern's text would match
    assert apply_rules(kept, "x\n(", FeedRules(skip="(")) is kept  # not skipped, unchanged
    moving = FeedRules(section=SYSTEMS, section_if="(")
    assert apply_rules(kept, "x\n(", moving) is kept  # not moved
    both = FeedRules(skip="(", section=SYSTEMS, section_if="(?i)^x$")  # the good rule still works
    moved = apply_rules(kept, "x", both)
    assert moved is not None and moved.section == SYSTEMS and moved.title == "("
