"""The picks' score and choice: pure functions, called directly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from digest.issue.compose import LEVELS, Ranking, arrange, group
from digest.issue.picks import (
    BlogHistory,
    Signals,
    choose,
    length,
    pick_count,
    rarity,
    score,
    score_posts,
)
from digest.types import Verdict
from tests.issue.test_render import END, post

NOTHING = Signals({}, {}, {})


@pytest.mark.parametrize(
    ("posts", "days", "expected"),
    [
        (1, 0, 1.0),  # one post on record: rare
        (6, 180, 1.0),  # monthly
        (26, 180, 0.48),  # weekly
        (180, 180, 0.18),  # daily
        (30, 7, 0.18),  # thirty in the week digest has known it: a link blog, not a rare one
        (780, 180, 0.09),  # thirty a week for half a year
    ],
)
def test_rarity_falls_with_the_pace_of_posting(posts: int, days: float, expected: float) -> None:
    assert rarity(BlogHistory(posts, days)) == pytest.approx(expected, abs=0.01)


def test_length_has_diminishing_returns() -> None:
    assert [round(length(m), 2) for m in (1, 5, 20, 60, 200)] == [0.17, 0.44, 0.74, 1.0, 1.0]


def test_links_from_other_blogs_count_once_each_and_not_the_blogs_own() -> None:
    p = post(1, 1, canonical_url="https://b1.example/1", words=460)
    signals = Signals(
        {1: BlogHistory(26, 180)}, {"https://b1.example/1": frozenset({1, 2, 3, 4})}, {}
    )
    s = score(p, signals)
    assert s.linked_by == 3 and s.links == 0.75
    assert s.total == pytest.approx(s.rarity + 1.5 * 0.75 + s.length)
    assert s.reason == "linked by 3 blogs on the list"


def test_reasons_name_the_strongest_part() -> None:
    quiet = BlogHistory(2, 130, previous=END - timedelta(days=130))
    essay = score(post(1, 1, date=END - timedelta(days=1), words=9000), Signals({1: quiet}, {}, {}))
    assert essay.reason == "first post in 4 months" and essay.months_quiet == 4
    weekly = Signals({1: BlogHistory(26, 180)}, {}, {})
    assert score(post(2, 1, words=6440), weekly).reason == "28 min read"
    assert score(post(3, 1, words=100), weekly).reason == "posts about once a week"
    assert score(post(3, 1, words=100), NOTHING).reason == "posts about once a month"


def test_the_curator_overrides_the_score() -> None:
    url = "https://b1.example/1"
    picked = score(post(1, 1, canonical_url=url), Signals({}, {}, {url: Verdict.PICK}))
    skipped = score(post(1, 1, canonical_url=url), Signals({}, {}, {url: Verdict.SKIP}))
    assert picked.total > 10 and picked.reason == "the editor's pick"
    assert skipped.total == 0 and skipped.curator is Verdict.SKIP


def test_choose_takes_the_best_one_per_blog_and_never_a_skip() -> None:
    posts = [post(i, feed, words=words) for i, feed, words in [
        (1, 1, 9000), (2, 1, 8000), (3, 2, 5000), (4, 3, 100), (5, 4, 3000), (6, 5, 50),
        (7, 6, 60), (8, 7, 70), (9, 8, 80), (10, 9, 90), (11, 10, 95), (12, 11, 99),
    ]]  # fmt: skip
    url = {p.id: p.canonical_url or "" for p in posts}
    scores = score_posts(posts, Signals({}, {}, {url[5]: Verdict.SKIP, url[4]: Verdict.PICK}))
    picks = choose(posts, scores, wanted=3)
    # The curator's first; one of blog 1; then blog 2's, not the skipped post of blog 4.
    assert [p.id for p in picks] == [4, 1, 3]


def test_pick_count_follows_the_week() -> None:
    assert pick_count(4, 3, 0) == 0  # a short week needs no picks
    assert pick_count(4, 8, 0) == 2
    assert pick_count(4, 100, 0) == 4
    assert pick_count(4, 3, 1) == 1  # the curator's pick shows anyway
    assert pick_count(0, 100, 2) == 0  # newsletter.picks = 0: none


def test_sections_order_by_score_blog_by_blog_and_leave_the_picks_out() -> None:
    posts = [
        post(1, 1, words=100, date=END - timedelta(hours=1)),  # newest, short
        post(2, 2, words=4000, date=END - timedelta(days=3)),
        post(3, 2, words=200, date=END - timedelta(days=2)),
        post(4, 3, words=3000, date=END - timedelta(days=4)),
        post(5, 3, words=50, date=END - timedelta(days=4)),
    ] + [post(10 + k, 4, words=30) for k in range(6)]
    scores = score_posts(posts, NOTHING)
    layout = arrange(group(posts, None, Ranking(scores, picks=1)), LEVELS[0])
    assert [p.item.title for p in layout.picks] == ["Post 2 of blog 2"]
    blogs = layout.sections[0].blogs
    # By each blog's best post left (equal scores: the newer first).
    assert [b.title for b in blogs] == ["Blog 3", "Blog 1", "Blog 4", "Blog 2"]
    assert [i.title for i in blogs[3].items] == ["Post 3 of blog 2"]  # its pick is above
    assert layout.sections[0].post_count == 11  # the pick still counts in its section
    assert (len(blogs[2].items), len(blogs[2].listed)) == (3, 3)  # folded at max_per_blog
