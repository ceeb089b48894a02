"""Rendering: templates, autoescape, the plain-text layout and the 90 KB budget."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from digest.issue.compose import LEVELS, Window, arrange
from digest.issue.render import IssueMeta, Renderer, inline_css, wrap
from digest.types import ML, OTHER, SYSTEMS, StoredPost

END = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
META = IssueMeta(
    "Weekend Reading",
    12,
    Window(END - timedelta(days=7), END),
    "https://news.example",
    ZoneInfo("UTC"),
)
LOREM = (
    "Consensus protocols trade latency for safety in ways that are easy to get wrong "
    "and hard to test, so we built a simulator. "
) * 12


def post(i: int, feed: int, section: str = ML, **kw: object) -> StoredPost:
    values: dict[str, object] = dict(
        id=i,
        feed_id=feed,
        feed_title=f"Blog {feed}",
        feed_site_url=f"https://b{feed}.example/",
        section=section,
        title=f"Post {i} of blog {feed}",
        link=f"https://b{feed}.example/{i}",
        canonical_url=f"https://b{feed}.example/{i}",
        author=f"Author {feed}",
        date=END - timedelta(hours=i % 150),
        first_seen=END,
        from_first_poll=False,
        text=LOREM,
        words=1200,
    )
    values.update(kw)
    return StoredPost(**values)  # type: ignore[arg-type]


def many(blogs: int, per_blog: int) -> list[StoredPost]:
    return [
        post(b * per_blog + k, b, ML if b % 2 else SYSTEMS)
        for b in range(blogs)
        for k in range(per_blog)
    ]


def test_a_huge_week_fits_the_budget_and_names_every_blog() -> None:
    posts = many(300, 20)
    layout, email = Renderer(None, ZoneInfo("UTC")).fit(posts, META, 90_000)
    assert len(email.html.encode()) < 90_000
    for b in range(300):
        assert f">Blog {b}<" in email.html or f"from Blog {b}<" in email.html
    assert "Unsubscribe</a>" in email.html and "Read it on the web" in email.html
    assert layout.post_count == 6000 and layout.blog_count == 300
    # The text part lists the same posts and blogs.
    for item in layout.items:
        assert item.link is not None and item.link in email.text
    for section in layout.sections:
        for blog in section.more_blogs:
            assert f"from {blog.title}: {blog.site_url}\n" in email.text


def test_a_small_week_gets_the_richest_layout() -> None:
    posts = many(3, 2)
    layout, email = Renderer(None, ZoneInfo("UTC")).fit(posts, META, 90_000)
    assert layout.level == LEVELS[0] and len(layout.items) == 6
    assert email.subject == "Weekend Reading #12: Post 2 of blog 1"  # the first item leads
    assert "3–10 January 2026" in email.html
    assert "Machine Learning" in email.html and "Systems" in email.html
    assert "Other" not in email.html  # shown only when not empty
    assert "6\u00a0min\u00a0read" in email.html  # 1200 words, never split across lines


def test_feed_text_never_injects_markup() -> None:
    evil = post(
        1,
        1,
        title='<script>alert(1)</script><img src=x onerror="y">',
        author="<b>Mallory</b>",
        feed_title='Blog "><script>',
        link='javascript:alert(1)" onclick="x',
        text="<i>plain</i> & more",
    )
    email = Renderer(None, ZoneInfo("UTC")).render(arrange([evil], LEVELS[0]), META)
    assert "<script>" not in email.html and "<img" not in email.html
    assert "&lt;script&gt;" in email.html
    assert 'onclick="x"' not in email.html and "javascript:" not in email.html


def test_invisible_format_characters_reach_no_part_of_the_issue() -> None:
    # Stored before titles were cleaned at parse time: the issue cleans them again.
    tricky = post(
        1,
        1,
        title="Invoice \u202eexe.txt\u202c for you",
        feed_title="Blog\u2066 of \u2069lies",
        text="Read \u202emore\u202c here. " * 20,
    )
    email = Renderer(None, ZoneInfo("UTC")).render(arrange([tricky], LEVELS[0]), META)
    for part in (email.subject, email.preheader, email.html, email.text):
        assert not {"\u202e", "\u202c", "\u2066", "\u2069"} & set(part)
    assert "Invoice exe.txt for you" in email.text and "Blog of lies" in email.html


def test_text_part_lines_fit_78_columns() -> None:
    posts = many(40, 3) + [post(999, 77, OTHER, title="A very long title " * 10)]
    email = Renderer(None, ZoneInfo("UTC")).fit(posts, META, 90_000)[1]
    for line in email.text.splitlines():
        # A URL can't be broken; everything else wraps.
        assert len(line) <= 78 or re.fullmatch(r"\s*(\S+: )?\s*https?://\S+", line), line
    assert "== OTHER ==" in email.text


def test_styles_are_inlined_and_media_rules_kept() -> None:
    email = Renderer(None, ZoneInfo("UTC")).render(arrange(many(2, 1), LEVELS[0]), META)
    assert 'class="t" href' in email.html or 'class="t"' in email.html
    assert re.search(r'<a class="t" href="[^"]+" style="[^"]*font-size:18px', email.html)
    assert "@media only screen and (max-width: 620px)" in email.html
    assert "prefers-color-scheme: dark" in email.html
    assert "max-width:600px" in email.html.replace(" ", "")
    assert "display:none" in email.html  # the preheader


def test_a_template_folder_overrides_the_look(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text("{{ title }} no. {{ number }}")
    email = Renderer(tmp_path, ZoneInfo("UTC")).render(arrange(many(1, 1), LEVELS[0]), META)
    assert email.subject == "Weekend Reading no. 12"
    assert "Post 0 of blog 0" in email.html  # the rest comes from the packaged templates


def test_inline_css_keeps_flat_media_queries() -> None:
    html = (
        "<html><head><style>p{color:red} @media (max-width: 10px){p{color:blue}}</style>"
        "</head><body><p>x</p></body></html>"
    )
    out = inline_css(html)
    assert 'style="color:red"' in out and "@media (max-width: 10px)" in out


def test_wrap_keeps_urls_whole() -> None:
    url = "https://example.com/" + "a" * 90
    assert wrap(f"see {url} now", indent="  ").splitlines() == ["  see", f"  {url}", "  now"]
