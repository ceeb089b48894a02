"""The curator's words and the issue's frame: the tiny Markdown of intros and notes, the subject
template and the preheader, the header's honest dates, headings, the Outlook wrapper, the
footers (the subscriber's, the web's), sections that never vanish."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.config import DEFAULT_SUBJECT, Settings, parse_subject
from digest.configfile import load_settings
from digest.errors import ConfigError
from digest.issue.compose import LEVELS, Layout, Ranking, Window, arrange, group
from digest.issue.inline import parse_inline
from digest.issue.picks import score_posts
from digest.issue.render import IssueMeta, Renderer
from digest.types import ML, SYSTEMS, StoredPost
from tests.issue.test_picks import NOTHING
from tests.issue.test_render import META, post

RENDERER = Renderer(None, ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("source", "html", "text"),
    [
        (
            "a *b* **c** _d_ __e__",
            "a <em>b</em> <strong>c</strong> <em>d</em> <strong>e</strong>",
            "a _b_ *c* _d_ *e*",
        ),
        (
            "[x](https://a.example/p_q)",
            '<a href="https://a.example/p_q">x</a>',
            "x (https://a.example/p_q)",
        ),
        (
            "see https://a.example/x.",
            'see <a href="https://a.example/x">https://a.example/x</a>.',
            "see https://a.example/x.",
        ),
        ("[me](mailto:me@a.example)", '<a href="mailto:me@a.example">me</a>', "me (me@a.example)"),
        (
            "<script>alert(1)</script> & co",
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co",
            "<script>alert(1)</script> & co",
        ),
        (
            "[click](javascript:alert(1))",
            "[click](javascript:alert(1))",
            "[click](javascript:alert(1))",
        ),
        ("[click](javascript:evil)", "click", "click"),
        ("[x](data:text/html,hi)", "x", "x"),
        (
            '[x](https://a.example/"onmouseover="y)',
            '<a href="https://a.example/&quot;onmouseover=&quot;y">x</a>',
            'x (https://a.example/"onmouseover="y)',
        ),
        ("snake_case_names stay", "snake_case_names stay", "snake_case_names stay"),
        (r"\*not\* emphasis", "*not* emphasis", "*not* emphasis"),
        ("one\n\nparagraph", "one paragraph", "one paragraph"),
    ],
)
def test_the_curators_markdown_is_links_and_emphasis_and_all_else_escaped(
    source: str, html: str, text: str
) -> None:
    words = parse_inline(source)
    assert (str(words.html), words.text) == (html, text)


def test_the_first_sentence_is_words_alone() -> None:
    intro = parse_inline("A week of *harnesses* and [terminals](https://t.example/). More soon.")
    assert intro.first_sentence == "A week of harnesses and terminals."


def test_the_subject_template_is_checked_when_read() -> None:
    assert parse_subject("{name} #{number}: {lead} ({posts} posts, {blogs} blogs)")
    with pytest.raises(ValueError, match=r"unknown placeholder \{title\}"):
        parse_subject("{title}")
    with pytest.raises(ConfigError, match="newsletter.subject"):
        load_settings(env={"DIGEST_NEWSLETTER_SUBJECT": "{number:>5}"})
    assert Settings().newsletter.subject == DEFAULT_SUBJECT == "{name} #{number}: {lead}"


def layout_of(posts: list[StoredPost], picks: int = 1) -> Layout:
    return arrange(group(posts, None, Ranking(score_posts(posts, NOTHING), picks)), LEVELS[0])


def test_the_subject_names_the_lead_pick_cut_at_a_word() -> None:
    long = "A very long title about consensus protocols and their many failure modes explained"
    posts = [post(1, 1, title=long, words=9000), post(2, 2), post(3, 3), post(4, 4)]
    meta = IssueMeta("Weekend Reading", 7, META.window, "https://n.example", ZoneInfo("UTC"))
    email = RENDERER.render(layout_of(posts), meta)
    assert (
        email.subject
        == "Weekend Reading #7: A very long title about consensus protocols and their many…"
    )
    custom = IssueMeta(
        "WR",
        7,
        META.window,
        "https://n.example",
        ZoneInfo("UTC"),
        subject_template="{name} {number} · {posts} posts from {blogs} blogs",
    )
    assert RENDERER.render(layout_of(posts), custom).subject == "WR 7 · 4 posts from 4 blogs"


def test_the_preheader_is_the_intro_else_the_picks_and_padded() -> None:
    posts = [post(1, 1, title="Pick one", words=9000), post(2, 2), post(3, 3), post(4, 4)]
    plain = RENDERER.render(layout_of(posts), META)
    assert plain.preheader == "Pick one"
    intro = parse_inline("Hello *readers*. The rest of the intro.")
    told = RENDERER.render(layout_of(posts), replace(META, intro=intro))
    assert told.preheader == "Hello readers."
    hidden = re.search(r'<div style="display:none[^"]*">(.*?)</div>', told.html, re.S)
    assert hidden and hidden.group(1).startswith("Hello readers.")
    # Padded with invisible characters, so an inbox shows no body text after it.
    assert hidden.group(1).count("\u2007\u034f") >= 100


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        ("2026-08-08T23:59:59", "2026-08-15T23:59:59", "9–15 August 2026"),  # --as-of days
        ("2026-08-08T08:00", "2026-08-15T08:00", "8–15 August 2026"),  # Saturday sends
        ("2026-12-06T08:00", "2026-12-06T20:00", "6 December 2026"),  # never "6–6 December"
        ("2026-12-05T23:59:59", "2026-12-06T20:00", "6 December 2026"),
        ("2026-07-30T08:00", "2026-08-06T00:00", "30 July – 5 August 2026"),  # ends at midnight
        ("2025-12-27T08:00", "2026-01-03T08:00", "27 December 2025 – 3 January 2026"),
    ],
)
def test_the_header_names_the_days_the_window_covers(start: str, end: str, shown: str) -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    assert RENDERER._date_range(Window(at(start), at(end))) == shown


def test_headings_the_outlook_wrapper_and_the_apple_meta() -> None:
    posts = [post(1, 1, ML, words=9000), post(2, 2, ML), post(3, 3, SYSTEMS), post(4, 4, SYSTEMS)]
    html = RENDERER.render(layout_of(posts), META).html
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", html) == ["Weekend Reading #12"]
    assert re.findall(r"<h2[^>]*>([^<]*)</h2>", html) == [
        "The week's picks",
        "Machine Learning",
        "Systems",
    ]
    assert len(re.findall(r"<h3[^>]*>", html)) == 4
    assert html.count("<!--[if mso]>") == 2 and 'width="600" align="center"' in html
    assert '<meta name="x-apple-disable-message-reformatting">' in html
    assert html.index(">Read it on the web<") < html.index("<h1")


def test_a_section_of_picks_keeps_its_heading_and_each_pick_its_section() -> None:
    posts = [post(1, 1, ML), post(2, 2, ML), post(3, 3, ML), post(4, 4, ML)]
    posts += [post(5, 5, SYSTEMS, words=9000)]  # the one Systems post: a pick
    layout = layout_of(posts, picks=2)
    email = RENDERER.render(layout, META)
    assert "<b>In this issue:</b> 4 Machine Learning posts, 1 Systems post." in email.html
    systems = email.html.split(">Systems</h2>")[1]
    assert "Its one post is among the week's picks above." in systems
    assert "Its one post is among the week's picks above." in email.text
    assert re.search(r">Systems · Blog 5", email.html) and "Systems · Blog 5" in email.text


def test_the_footers_the_subscribers_and_the_webs() -> None:
    posts = [post(1, 1), post(2, 2)]
    mail = RENDERER.render(
        layout_of(posts, 0), replace(META, signup=True, postal_address="1 Main St")
    )
    assert "Unsubscribe</a>" in mail.html and "Forwarded this? <a" in mail.html
    assert mail.html.index("1 Main St") > mail.html.index("Forwarded this?")
    assert "\n-- \n" in mail.text and "Archive:     https://news.example/" in mail.text
    assert "Forwarded this? Subscribe: https://news.example/subscribe" in mail.text
    web = RENDERER.render(
        layout_of(posts, 0), replace(META, signup=True, postal_address="1 Main St", web=True)
    )
    assert "Unsubscribe" not in web.html and "Choose sections" not in web.html
    assert "unsubscribe.invalid" not in web.html + web.text
    assert re.search(
        r'href="https://news.example/subscribe"[^>]*>Subscribe</a> to get it', web.html
    )
    assert ">All issues</a>" in web.html and "1 Main St" in web.html
    assert ">Read it on the web<" not in web.html  # it is the web


def test_a_post_of_unknown_length_says_no_reading_time_and_scores_the_median() -> None:
    essay = post(1, 1, title="Essay", words=None)
    posts = [essay, post(2, 2, words=230), post(3, 3, words=2300), post(4, 4, words=23000)]
    scores = score_posts(posts, NOTHING)
    assert scores[1].minutes is None and scores[1].length == scores[3].length  # the median
    layout = arrange(group(posts, None, Ranking(scores, 0)), LEVELS[0])
    email = RENDERER.render(layout, META)
    shown = email.html.split(">Essay<")[1].split("</td>")[0]
    assert (
        "min\u00a0read" not in shown
        and "min read" not in email.text.split("Essay")[1].split("\n\n")[0]
    )
    assert "10\u00a0min\u00a0read" in email.html  # the known ones keep theirs


def test_a_busy_week_names_what_the_budget_holds_and_counts_the_rest() -> None:
    from tests.issue.test_render import many

    layout, email = RENDERER.fit(many(300, 20), META, 90_000)
    assert len(email.html.encode()) <= 90_000
    named = len(layout.items) + len(layout.lines)
    assert layout.unlisted == 6000 - named and named > 60
    # A quieter week names every post: the folded blogs' in one line each.
    layout, email = RENDERER.fit(many(40, 8), META, 90_000)
    assert len(layout.items) + len(layout.lines) == 320 and layout.unlisted == 0
    assert len(email.html.encode()) <= 90_000
    for line in layout.lines[-3:]:
        assert line.title in email.html and line.title in email.text


def test_the_window_starts_where_the_scheduled_send_would_and_never_reaches_back_months() -> None:
    from digest.issue.compose import window_for

    saturday = datetime(2026, 8, 15, 8, 0, tzinfo=UTC)
    thursday = saturday - timedelta(days=2)
    # A first issue sent by hand on Thursday starts where Saturday's would.
    assert window_for(thursday, [], saturday).start == window_for(saturday, [], saturday).start
    # After an old week sent by hand, two weeks at most.
    assert window_for(
        saturday, [saturday - timedelta(days=120)], saturday
    ).start == saturday - timedelta(days=14)
    assert window_for(
        saturday, [saturday - timedelta(days=7)], saturday
    ).start == saturday - timedelta(days=7)
    # A send by hand long before a monthly send time: its week back from now.
    monthly = saturday + timedelta(days=25)
    assert window_for(saturday, [], monthly).start == saturday - timedelta(days=7)
