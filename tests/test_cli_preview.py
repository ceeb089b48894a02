"""`digest preview` end to end: real feeds over HTTP, a real poll, a real database; the preview
under test a real process where its output is the subject, set-up in process (tests/README.md)."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import digest_env, run_cli, run_digest
from tests.poll_helpers import Item, rss, write_opml
from tests.servers import FeedServer, Response

WEEK_END = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)


def weekly_posts(site: str, name: str) -> list[Item]:
    """One post a week for six weeks, the newest first, plus this week's extra one."""
    posts = [
        Item(
            f"{site}/w{k}",
            f"{name} week -{k}",
            f"{site}/w{k}.html",
            f"<p>Text of {name} {k} with <script>evil()</script> markup.</p>",
            WEEK_END - timedelta(days=7 * k + 2),
        )
        for k in range(6)
    ]
    return posts


def serve(http: FeedServer) -> dict[str, str]:
    ml = weekly_posts("https://ml.example", "ML")
    systems = weekly_posts("https://sys.example", "Sys")
    other = [
        Item("o1", "Other news", "https://other.example/1", "Misc.", WEEK_END - timedelta(days=1))
    ]
    http.route("/ml.xml", Response(200, rss(ml, "ML blog", "https://ml.example")))
    http.route("/sys.xml", Response(200, rss(systems, "Sys blog", "https://sys.example")))
    http.route("/other.xml", Response(200, rss(other, "Misc blog", "https://other.example")))
    return {"ml": http.url("/ml.xml"), "sys": http.url("/sys.xml"), "other": http.url("/other.xml")}


def setup(workdir: Path, db_url: str, http: FeedServer) -> dict[str, str]:
    urls = serve(http)
    write_opml(
        workdir / "feeds.opml",
        [
            ("ML", "ML blog", urls["ml"]),
            ("Systems", "Sys blog", urls["sys"]),
            ("Elsewhere", "Misc blog", urls["other"]),
        ],
    )
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_NEWSLETTER_BASE_URL": "https://news.example"}
    polled = run_cli(["poll", "--json"], env)
    assert polled.exit_code == 0, polled.output
    assert json.loads(polled.stdout)["new_posts"] == 13
    return env


def cli(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_preview_of_one_week_in_three_forms(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    env = setup(workdir, sqlite_url, http)
    args = ["preview", "--as-of", "2026-01-10"]
    html = run_digest([*args, "--format", "html", "-o", "week.html", "--json"], env, workdir)
    assert html.returncode == 0, html.stderr
    built = json.loads(html.stdout)
    assert built["posts"] == 3 and built["number"] == 1
    page = (workdir / "week.html").read_text()
    # This week's post of each blog, in its section, and nothing from other weeks.
    assert re.search(
        r"Machine Learning.*ML week -0.*Systems.*Sys week -0.*Other.*Other news", page, re.S
    )
    assert "week -1" not in page
    assert "<script>" not in page.split("</head>")[1] and "evil()" not in page
    assert "https://news.example/issues/1" in page and "Unsubscribe" in page

    text = cli([*args, "--format", "text", "-o", "-"], env)
    eml = run_cli([*args, "--format", "eml", "-o", "week.eml"], env)
    assert eml.exit_code == 0, eml.output
    assert eml.stdout == f"{(workdir / 'week.eml').resolve()}\n"  # the path alone, for scripts
    assert re.fullmatch(
        r"issue #1: 3 posts from 3 blogs, \d+\.\d KB of HTML\n"
        r"its window starts Sat 3 Jan 2026 23:59 UTC and ends at --as-of "
        r"\(Sat 10 Jan 2026 23:59 UTC\)\n",
        eml.stderr,
    )
    msg = email.message_from_bytes((workdir / "week.eml").read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert msg["Subject"] == "Weekend Reading #1: ML week -0"  # the first pick's title
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for title in ("ML week -0", "Sys week -0", "Other news"):
        assert title in text and title in plain and title in page


def test_an_earlier_week_and_the_default_path(workdir: Path, db_url: str, http: FeedServer) -> None:
    """The preview's smoke test on both backends (a poll stored and a week's posts read)."""
    env = setup(workdir, db_url, http)
    out = run_digest(["preview", "--as-of", "2026-01-03"], env, workdir)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.name == "preview-1.html" and path.exists()
    page = path.read_text()
    assert "ML week -1" in page and "Sys week -1" in page and "week -0" not in page


def test_an_empty_week_says_so(workdir: Path, sqlite_url: str, http: FeedServer) -> None:
    env = setup(workdir, sqlite_url, http)
    out = cli(["preview", "--as-of", "2027-06-01"], env)
    assert "no new posts" in out and "would not be sent" in out
    assert not list(workdir.glob("preview-*"))


def test_a_bad_date_is_one_line(workdir: Path, sqlite_url: str) -> None:
    out = run_cli(["preview", "--as-of", "someday"], {"DIGEST_DATABASE_URL": sqlite_url})
    assert out.exit_code != 0 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "ISO 8601" in out.stderr


def test_serve_renders_again_on_every_reload(workdir: Path, sqlite_url: str) -> None:
    import subprocess
    import sys
    import urllib.request

    from digest.storage import Database
    from tests.issue_helpers import SAT, add_feed, add_post

    db = Database(sqlite_url)
    feed = add_feed(db, "Served blog")
    add_post(db, feed, "First post", date=SAT - timedelta(days=1))
    env = digest_env({"DIGEST_DATABASE_URL": sqlite_url})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "preview",
            "--serve",
            "--port",
            "0",
            "--as-of",
            SAT.isoformat(),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://\S+/", proc.stdout.readline())
        assert url, proc.stderr.read() if proc.stderr else ""
        first = urllib.request.urlopen(url.group(0), timeout=10).read().decode()
        assert "First post" in first and "Second post" not in first
        add_post(db, feed, "Second post", date=SAT - timedelta(hours=2))
        second = urllib.request.urlopen(url.group(0), timeout=10).read().decode()
        assert "Second post" in second
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_future_date_waits_for_its_week_and_a_far_one_counts_from_now(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    now = datetime.now(UTC)
    past = Item("past", "Yesterday", "https://f.example/past", "Past.", now - timedelta(1))
    soon = Item("soon", "Three days ahead", "https://f.example/soon", "Soon.", now + timedelta(3))
    far = Item(
        "far", "Dated 2099", "https://f.example/far", "Far.", datetime(2099, 1, 1, tzinfo=UTC)
    )
    feed = {"posts": [past]}
    http.route("/f.xml", lambda _r: Response(200, rss(feed["posts"], "F", "https://f.example")))
    write_opml(workdir / "feeds.opml", [("ML", "Future blog", http.url("/f.xml"))])
    env = {"DIGEST_DATABASE_URL": sqlite_url}
    cli(["poll"], env)
    feed["posts"] = [far, soon, past]  # both new since the feed's first poll
    cli(["poll"], env)

    def preview(days: float) -> str:
        as_of = (now + timedelta(days=days)).isoformat()
        return cli(["preview", "--as-of", as_of, "--format", "text", "-o", "-"], env)

    this_week = preview(1)
    assert "Yesterday" in this_week and "Three days ahead" not in this_week
    assert "Dated 2099" in this_week  # a date years ahead is a mistake: dated when first seen
    next_week = preview(8)
    assert "Three days ahead" in next_week and "Yesterday" not in next_week


def test_excerpts_of_real_feed_shapes_open_with_prose(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    """The shapes of al-folio, Substack and Hugo feeds (tests/data/excerpts/), polled over
    HTTP and previewed: no heading glued to a sentence, no button, caption or note."""
    data = Path(__file__).parent / "data" / "excerpts"
    feeds = [("ML", "Workshop", "alfolio.atom"), ("ML", "Forge", "substack.rss")]
    feeds.append(("Systems", "Terminal", "hugo.atom"))
    for _, _, name in feeds:
        http.route(f"/{name}", Response(200, (data / name).read_bytes()))
    write_opml(workdir / "feeds.opml", [(f, t, http.url(f"/{n}")) for f, t, n in feeds])
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_FETCH_PAGES": "false"}
    env.update(DIGEST_NEWSLETTER_MAX_PER_BLOG="10")  # every post, with its excerpt
    cli(["poll"], env)
    out = cli(["preview", "--as-of", "2026-03-07", "--format", "text", "-o", "-"], env)
    text = " ".join(out.split())
    for glued in ("Introduction Differential", "Background The", "contributed equally"):
        assert glued not in text
    for furniture in ("Subscribe", "Share", "Photo by", "Figure 1", "Updated on", "Tags:"):
        assert furniture not in text.split("--")[0]  # the footer has its own words
    assert "Differential privacy is a way to reason" in text
    assert "Imagine you are new to a city and looking for dinner." in text
    assert "some combination of: Your operating system’s job; Your shell’s job;" in text
