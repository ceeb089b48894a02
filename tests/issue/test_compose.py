"""The pure layout rules: ordering, caps, excerpts, links, authors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from digest.issue.compose import (
    LEVELS,
    Level,
    Line,
    Ranking,
    Window,
    arrange,
    group,
    may_show,
    web_link,
    window_for,
)
from digest.types import ML, SYSTEMS
from tests.issue.test_render import post

END = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)


def test_window_starts_where_the_last_issue_ended() -> None:
    assert window_for(END, []) == Window(END - timedelta(days=7), END)
    earlier = [END - timedelta(days=14), END - timedelta(days=7)]
    assert window_for(END, [*earlier, END + timedelta(days=7)]).start == earlier[1]


def test_blogs_newest_first_and_posts_newest_first_within_a_blog() -> None:
    posts = [
        post(1, 1, date=END - timedelta(days=3)),
        post(2, 1, date=END - timedelta(days=1)),
        post(3, 2, date=END - timedelta(hours=1)),
    ]
    section = arrange(posts, LEVELS[0]).sections[0]
    assert [b.title for b in section.blogs] == ["Blog 2", "Blog 1"]
    assert [i.title for i in section.blogs[1].items] == ["Post 2 of blog 1", "Post 1 of blog 1"]


def test_past_the_caps_every_post_is_named_on_a_line() -> None:
    posts = [post(b * 10 + k, b) for b in range(5) for k in range(4)]
    layout = arrange(posts, Level(per_blog=1, per_section=3, excerpt_words=20))
    section = layout.sections[0]
    assert len(section.items) == 3 and all(len(b.listed) == 3 for b in section.blogs)
    assert [len(b.listed) for b in section.more_blogs] == [4, 4]
    assert all(b.more == 0 for b in section.blogs + section.more_blogs)
    assert layout.post_count == 20 and len(layout.items) + len(layout.lines) == 20
    # Lines in the issue's order: the blogs with items, then those without, each best first.
    dated = post(1, 0).date
    assert dated is not None
    assert layout.lines[0] == Line(1, "Post 1 of blog 0", "https://b0.example/1", dated)


def test_the_budget_trims_lines_from_the_end_and_counts_the_rest() -> None:
    posts = [post(b * 10 + k, b) for b in range(5) for k in range(4)]
    layout = arrange(posts, Level(per_blog=1, per_section=3, excerpt_words=20), lines=10)
    section = layout.sections[0]
    assert len(layout.lines) == 10 and layout.unlisted == 7
    assert [(len(b.listed), b.more) for b in section.blogs] == [(3, 0), (3, 0), (3, 0)]
    assert [(len(b.listed), b.more) for b in section.more_blogs] == [(1, 3), (0, 4)]


def test_a_blog_shows_at_most_max_per_blog_and_a_quiet_week_up_to_it() -> None:
    posts = [post(k, 1) for k in range(9)]
    blog = arrange(posts, LEVELS[0]).sections[0].blogs[0]
    assert (len(blog.items), len(blog.listed)) == (3, 6)  # newsletter.max_per_blog's default
    quiet = arrange(group(posts, None, Ranking(max_per_blog=6)), LEVELS[1])
    assert (len(quiet.sections[0].blogs[0].items), len(quiet.sections[0].blogs[0].listed)) == (
        6,
        3,
    )


def test_every_item_of_every_level_is_among_those_that_may_show() -> None:
    """Rendering reads texts only for may_show's posts (plan.render_plan): every level's
    items, picks included, for quiet and busy weeks and a large max_per_blog."""
    busy = [post(b * 100 + k, b, ML if b % 3 else SYSTEMS) for b in range(60) for k in range(5)]
    quiet = [post(k, 1) for k in range(9)] + [post(20 + k, 2) for k in range(4)]
    for posts in (busy, quiet):
        for ranking in (Ranking(picks=4), Ranking(max_per_blog=50), Ranking()):
            for sections in (None, frozenset({SYSTEMS})):
                grouped = group(posts, sections, ranking)
                may = {p.id for p in may_show(grouped)}
                for level in LEVELS:
                    items = arrange(grouped, level).items
                    assert {i.post_id for i in items} <= may
    # A busy week's texts are read for a few of its posts: 40 blogs' first three per section.
    assert len(may_show(group(busy))) == 40 * 3 + 20 * 3


def test_section_choice_filters() -> None:
    posts = [post(1, 1, ML), post(2, 2, SYSTEMS)]
    layout = arrange(posts, LEVELS[0], frozenset({SYSTEMS}))
    assert [s.key for s in layout.sections] == [SYSTEMS] and layout.post_count == 1


def test_excerpts_are_cut_at_a_word_and_skip_tex() -> None:
    text = r"$$ \def\E#1{x} \newcommand{\cL}{\mathcal{L}} $$ " + "word " * 100
    item = arrange([post(1, 1, text=text)], Level(1, 1, 40)).items[0]
    assert "\\def" not in item.excerpt and item.excerpt.endswith("word…")
    assert 25 <= len(item.excerpt.split()) <= 40


def test_author_shown_only_when_it_adds_something() -> None:
    same = arrange([post(1, 1, author="Blog 1")], LEVELS[0]).items[0]
    other = arrange([post(2, 1, author="Jane Doe")], LEVELS[0]).items[0]
    assert same.author is None and other.author == "Jane Doe"


def test_only_web_links_reach_the_reader() -> None:
    assert web_link("https://a.example/x") == "https://a.example/x"
    assert web_link("javascript:alert(1)") is None
    assert web_link("data:text/html,x") is None
    assert web_link(None) is None
