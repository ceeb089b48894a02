"""The week's picks end to end: a realistic week of feeds served over HTTP, a real poll, a real
database, `digest preview` (HTML, text, --json), the curator's `pick`/`skip`/`picks`.

The week: a link blog with 30 short posts, a blog whose only post in 120 days is a 9,000-word
essay, a post linked by three other blogs on the list, and eight ordinary posts. It ends now
(a pick or a skip names a post of the coming issue, and the issue is the one sent now), with a
send every minute, so that the coming issue's week is the week before now whatever the day.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from tests.conftest import run_cli
from tests.poll_helpers import write_opml
from tests.servers import FeedServer, Response

END = datetime.now(UTC).replace(second=0, microsecond=0)  # the issue's send time
AS_OF = END.isoformat()
WEEK = END - timedelta(days=7)
LINKED = "https://systems-notes.example/2026/the-linked-post/"
ESSAY = "https://long-essays.example/on-slowness/"
PROSE = (
    "Replication is the oldest trick in distributed systems and still the hardest to get "
    "right, because every copy has to agree on what happened and in which order. "
)


@dataclass(frozen=True)
class Post:
    title: str
    link: str
    date: datetime
    body: str


def rss(site: str, posts: Sequence[Post]) -> bytes:
    items = "".join(
        f"<item><title>{escape(p.title)}</title><link>{p.link}</link><guid>{p.link}</guid>"
        f"<pubDate>{format_datetime(p.date)}</pubDate>"
        f"<content:encoded><![CDATA[{p.body}]]></content:encoded></item>"
        for p in posts
    )
    return (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>t</title>'
        f"<link>{site}/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def weekly(site: str, name: str, weeks: int) -> list[Post]:
    """A blog's earlier posts, one a week before this issue's window: its history."""
    return [
        Post(f"{name}, week -{k}", f"{site}/w{k}", WEEK - timedelta(days=7 * k), f"<p>{PROSE}</p>")
        for k in range(1, weeks + 1)
    ]


def the_week() -> dict[str, tuple[str, str, list[Post]]]:
    """Feed path -> (OPML folder, title, posts)."""
    roundup = [
        Post(
            f"Link: tool number {k}",
            f"https://roundup.example/links/{k}",
            WEEK + timedelta(hours=2 + 5 * k),
            f'<p>A neat <a href="https://elsewhere.example/{k}">tool</a>, worth a look.</p>',
        )
        for k in range(30)
    ]
    essay_body = "<h2>Introduction</h2>" + "".join(
        f"<p>{PROSE * 3}</p>" for _ in range(108)
    )  # 9,073 words
    essays = [
        Post("On slowness", ESSAY, END - timedelta(days=2), essay_body),
        Post(
            "An older essay",
            "https://long-essays.example/older/",
            END - timedelta(days=130),
            "<p>Old.</p>",
        ),
    ]
    linked_body = "".join(f"<p>{PROSE}</p>" for _ in range(30))  # about 900 words
    notes = [Post("The linked post", LINKED, END - timedelta(days=4), linked_body)]
    notes += weekly("https://systems-notes.example", "Notes", 8)

    def linking(site: str, name: str) -> list[Post]:
        body = f'<p>Read <a href="{LINKED}">this post on consensus</a>. {PROSE}</p>'
        return [Post(f"{name} on consensus", f"{site}/consensus", END - timedelta(days=3), body)]

    def ordinary(site: str, name: str, count: int) -> list[Post]:
        return [
            Post(
                f"{name} this week {k}",
                f"{site}/p{k}",
                END - timedelta(days=1 + k),
                f"<p>{PROSE * 2}</p>",
            )
            for k in range(count)
        ]

    return {
        "/roundup.xml": ("ML", "Link Roundup", roundup),
        "/essays.xml": ("ML", "Long Essays", essays),
        "/notes.xml": ("Systems", "Systems Notes", notes),
        "/a.xml": (
            "ML",
            "Blog A",
            linking("https://a.example", "A") + weekly("https://a.example", "A", 6),
        ),
        "/b.xml": (
            "ML",
            "Blog B",
            linking("https://b.example", "B") + weekly("https://b.example", "B", 6),
        ),
        "/c.xml": (
            "Systems",
            "Blog C",
            linking("https://c.example", "C") + weekly("https://c.example", "C", 6),
        ),
        "/d.xml": (
            "ML",
            "Blog D",
            ordinary("https://d.example", "D", 3) + weekly("https://d.example", "D", 6),
        ),
        "/e.xml": (
            "Systems",
            "Blog E",
            ordinary("https://e.example", "E", 2) + weekly("https://e.example", "E", 6),
        ),
    }


def setup(workdir: Path, db_url: str, http: FeedServer) -> dict[str, str]:
    week = the_week()
    for path, (_folder, _title, posts) in week.items():
        site = re.match(r"https://[^/]+", posts[0].link)
        assert site
        http.route(path, Response(200, rss(site.group(0), posts)))
    write_opml(workdir / "feeds.opml", [(f, t, http.url(p)) for p, (f, t, _) in week.items()])
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_FEEDS_FETCH_PAGES": "false"}
    env["DIGEST_NEWSLETTER_SEND_AT"] = "cron: * * * * *"
    polled = run_cli(["poll", "--json"], env)
    assert polled.exit_code == 0, polled.output
    return env


def preview(env: dict[str, str], *args: str) -> dict[str, object]:
    out = run_cli(["preview", "--as-of", AS_OF, "-o", "week.html", "--json", *args], env)
    assert out.exit_code == 0, out.output
    summary: dict[str, object] = json.loads(out.stdout)
    return summary


def titles(rows: object) -> list[str]:
    assert isinstance(rows, list)
    return [row["title"] for row in rows]


def test_a_realistic_week_leads_with_the_essay_and_the_linked_post(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    env = setup(workdir, db_url, http)
    built = preview(env)
    assert built["posts"] == 40
    picks = {row["title"]: row for row in built["picks"]}  # type: ignore[attr-defined]
    assert len(picks) == 4
    assert "On slowness" in picks and "The linked post" in picks
    assert not any(row["blog"] == "Link Roundup" for row in picks.values())
    # Each pick says why, with its score's parts and the stored signals behind them.
    essay, linked = picks["On slowness"], picks["The linked post"]
    assert essay["reason"] == "first post in 4 months"
    assert essay["signals"]["minutes"] >= 39 and essay["parts"]["rarity"] == 1.0
    assert linked["reason"] == "linked by 3 blogs on the list"
    assert linked["signals"]["linked_by_blogs"] == 3 and linked["parts"]["links"] == 1.125
    scores = built["scores"]
    assert isinstance(scores, list) and len(scores) == 40
    roundup = [row for row in scores if row["blog"] == "Link Roundup"]
    assert max(r["score"] for r in roundup) < min(r["score"] for r in picks.values())
    assert all(r["parts"]["rarity"] < 0.2 for r in roundup)

    assert isinstance(built["html_bytes"], int) and built["html_bytes"] < 90_000
    html = (workdir / "week.html").read_text()
    body = html.split("</head>")[1]
    # The picks come first, then the sections; the link blog is folded after three items,
    # and its 27 other posts are named one a line.
    assert body.index("The week's picks") < body.index(">Machine Learning<")
    assert len(re.findall(r'class="t"[^>]*>Link: tool number \d+<', body)) == 3
    assert len(re.findall(r">Link: tool number \d+<", body)) == 30
    assert "Also from Link Roundup" in body and "more from Link Roundup" not in body
    assert "<b>In this issue:</b> 36 Machine Learning posts, 4 Systems posts." in body
    # What an inbox shows after the subject: the picks' titles (no intro this week).
    assert body.index("On slowness") < body.index("Read it on the web")
    assert "Picks:" in body and "first post in 4 months" in body
    assert body.count('class="why"') == 4  # every pick says why
    # Each pick is shown once, in the picks, not again in its section.
    assert body.count(">On slowness<") == 1 and body.count(">The linked post<") == 1

    text = run_cli(["preview", "--as-of", AS_OF, "--format", "text", "-o", "-"], env)
    assert "== THE WEEK'S PICKS" in text.stdout
    assert "linked by 3 blogs on the list" in text.stdout
    assert text.stdout.count("- Link: tool number") == 27
    # Ordered by score, blog by blog: the link blog's items come after the essay's blog.
    ml = text.stdout.split("== MACHINE LEARNING")[1].split("== SYSTEMS")[0]
    assert ml.index("Blog") < ml.index("Link: tool number")


def test_the_size_budget_still_holds_and_picks_can_be_off(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    env = setup(workdir, db_url, http)
    small = preview({**env, "DIGEST_NEWSLETTER_MAX_KB": "20"})
    assert isinstance(small["html_bytes"], int) and small["html_bytes"] <= 20_000
    assert "On slowness" in titles(small["picks"])
    off = preview({**env, "DIGEST_NEWSLETTER_PICKS": "0"})
    assert off["picks"] == [] and "The week's picks" not in (workdir / "week.html").read_text()
    five = preview({**env, "DIGEST_NEWSLETTER_MAX_PER_BLOG": "5"})
    html = (workdir / "week.html").read_text()
    assert len(re.findall(r'class="t"[^>]*>Link: tool number \d+<', html)) == 5
    assert five["lines_shown"] == 25 and five["unlisted"] == 0  # the rest, named
    assert len(five["picks"]) == 4  # type: ignore[arg-type]


def test_the_curator_picks_and_skips_for_the_coming_issue(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    env = setup(workdir, db_url, http)
    ordinary = "https://e.example/p1"
    picked = run_cli(["pick", ordinary], env)
    assert picked.exit_code == 0, picked.output
    assert "pick for the coming issue: E this week 1" in picked.output
    assert run_cli(["skip", LINKED + "?utm_source=feed"], env).exit_code == 0  # canonical
    nowhere = run_cli(["pick", "https://nowhere.example/x"], env)
    assert nowhere.exit_code == 1 and "no stored post has this URL" in nowhere.output
    old = run_cli(["pick", "https://long-essays.example/older/"], env)
    assert old.exit_code == 1 and "outside the coming issue's window" in old.output
    assert old.output.strip().count("\n") == 0
    assert run_cli(["pick", "--undo", "https://nowhere.example/x"], env).exit_code == 0
    listed = json.loads(run_cli(["picks", "--json"], env).stdout)
    assert [(r["verdict"], r["title"]) for r in listed["verdicts"]] == [
        ("pick", "E this week 1"),
        ("skip", "The linked post"),
    ]

    built = preview(env)
    picks = {row["title"]: row for row in built["picks"]}  # type: ignore[attr-defined]
    assert "E this week 1" in picks and picks["E this week 1"]["reason"] == "the editor's pick"
    # A skip keeps the post out of the issue: not a pick, not in its section, not counted.
    assert built["skipped"] == ["The linked post"] and built["posts"] == 39
    assert "The linked post" not in titles(built["scores"])
    assert "The linked post" not in (workdir / "week.html").read_text()

    # Recording the issue (sending is off) spends them: the next issue starts afresh.
    assert run_cli(["send", "--as-of", AS_OF], env).exit_code == 0
    spent = run_cli(["picks"], env).stdout.strip()
    assert spent == "no intro, picks or skips for the coming issue"
    again = preview(env)  # the recorded issue keeps its own
    assert "E this week 1" in titles(again["picks"]) and again["skipped"] == ["The linked post"]


def test_bad_urls_are_one_line_errors(workdir: Path, sqlite_url: str) -> None:
    out = run_cli(["pick", "javascript:alert(1)"], {"DIGEST_DATABASE_URL": sqlite_url})
    assert out.exit_code == 1 and "is not an http(s) URL" in out.output
    assert out.output.strip().count("\n") == 0
