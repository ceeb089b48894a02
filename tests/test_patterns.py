"""Issue 23, hostile rules: a feed rule's regular expression cannot hold an issue (RE2 never
backtracks), cannot cost gigabytes (a length cap checked before anything compiles it), cannot
end in a traceback (deep nesting), and an imported OPML file's rules are not trusted silently.
Each test failed on the code before (31e4ee9): a hang, a pass of the huge rule, a
RecursionError, rules imported as they came."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.errors import ConfigError
from digest.feedlist.opml import parse_opml
from digest.feedlist.remote import ImportedRules
from digest.feedlist.rules import check_pattern, parse_rules
from digest.issue.rules import apply_rules
from digest.patterns import MAX_PATTERN, compiled, pattern_problem, shown
from digest.types import FeedRules, StoredPost

CATASTROPHIC = "(a+)+$"
NESTED = "(" * 5000 + "a" + ")" * 5000
HUGE = "a|" * 4_750_000  # 9.5 MB, as the red team's rule


def post(title: str) -> StoredPost:
    when = datetime(2026, 1, 9, tzinfo=UTC)
    return StoredPost(
        id=1,
        feed_id=1,
        feed_title="Blog",
        feed_site_url=None,
        section="ml",
        title=title,
        link="https://blog.example/1",
        canonical_url=None,
        author=None,
        date=when,
        first_seen=when,
        from_first_poll=False,
        text="x",
    )


@pytest.mark.timeout(30)  # `re` took 2.2 s at 24 letters, doubling with each: years at 100,000
def test_a_catastrophic_skip_rule_matches_in_linear_time() -> None:
    rules = FeedRules(skip=CATASTROPHIC)
    assert apply_rules(post("a" * 100_000 + "!"), None, rules) is not None  # no match: shown
    assert apply_rules(post("a" * 100_000), None, rules) is None  # a match: skipped
    assert apply_rules(post("b"), "a" * 100_000 + "!", rules) is not None  # categories too


def test_a_huge_rule_is_refused_before_it_compiles_in_one_short_line() -> None:
    with pytest.raises(ConfigError) as refused:
        check_pattern(HUGE, "feeds.opml: feed https://x.example/feed", "skip")
    message = str(refused.value)
    assert f"longer than {MAX_PATTERN} characters (9,500,000)" in message
    assert len(message) < 250 and "…" in message
    assert compiled(HUGE) is None  # one stored by hand before: matches nothing


def test_deeply_nested_groups_are_an_error_not_a_traceback() -> None:
    with pytest.raises(ConfigError, match="bad regular expression"):
        check_pattern(NESTED, "lists/ml.md:3", "skip")
    nested_in_cap = "(" * 240 + "a" + ")" * 240  # under the cap: RE2 reads it, no recursion
    assert pattern_problem(nested_in_cap) is None
    assert apply_rules(post("a"), None, FeedRules(skip=nested_in_cap)) is None
    assert apply_rules(post("a"), None, FeedRules(skip=NESTED)) is not None


def test_a_rule_re2_cannot_read_names_the_syntax() -> None:
    with pytest.raises(ConfigError, match="no lookaround, no backreferences"):
        parse_rules('skip: "(?<!not )sponsored"', "lists/ml.md:4")
    assert parse_rules('skip: "(?i)sponsored|weeknotes"', "x") == FeedRules(
        skip="(?i)sponsored|weeknotes"
    )


def test_shown_escapes_and_cuts_a_rule_for_one_line() -> None:
    assert shown("(?i)ad") == '"(?i)ad"'
    assert shown("a\nb\x1b[2J") == '"a\\nb\\x1b[2J"'
    assert shown("x" * 100, width=10) == '"xxxxxxxxxx…" (100 characters)'


OPML = f"""<?xml version="1.0"?><opml version="2.0"><body><outline text="ML">
<outline text="Evil" xmlUrl="https://evil.example/feed" skip="{CATASTROPHIC}"/>
<outline text="Nested" xmlUrl="https://nested.example/feed" skip="{NESTED}"/>
<outline text="Moved" xmlUrl="https://moved.example/feed" section="systems"/>
<outline text="Plain" xmlUrl="https://plain.example/feed"/>
</outline></body></opml>""".encode()


def test_an_imported_lists_rules_are_dropped_with_a_line_each() -> None:
    rules = ImportedRules()
    sources = parse_opml(OPML, "https://lists.example/x.opml", read_rules=rules)
    assert [s.rules for s in sources] == [FeedRules()] * 4
    assert rules.dropped == 3 and len(rules.notes) == 3
    evil, nested, moved = rules.notes
    assert evil == (
        "https://lists.example/x.opml: feed https://evil.example/feed: rules dropped "
        '(skip="(a+)+$"): --keep-rules keeps them'
    )
    assert "(10,001 characters)" in nested and len(nested) < 250
    assert 'section="systems"' in moved


def test_keep_rules_keeps_the_sound_ones_and_drops_a_bad_one_with_its_reason() -> None:
    rules = ImportedRules(keep=True)
    sources = parse_opml(OPML, "x.opml", read_rules=rules)
    by_title = {s.title: s.rules for s in sources}
    assert by_title["Evil"] == FeedRules(skip=CATASTROPHIC)  # RE2 reads it in linear time
    assert by_title["Nested"] == FeedRules()
    assert by_title["Moved"] == FeedRules(section="systems")
    [note] = rules.notes
    assert note.startswith("x.opml: feed https://nested.example/feed: skip: bad regular")
    assert note.endswith("; its rules dropped")


def test_the_feed_lists_own_file_still_refuses_a_bad_rule() -> None:
    with pytest.raises(ConfigError, match="feed https://nested.example/feed: skip: bad"):
        parse_opml(OPML, "feeds.opml")
