"""The curator's issue end to end, through the CLI in process: a week of the list's blogs in
their real feeds' shapes (tests/data/week/) served over HTTP, a real poll, a real database,
real SMTP on 127.0.0.1, the web page of the recorded issue.

The week: Lil'Log's summary-only essay whose page answers 404, a link blog's eight posts,
quotations, code blocks, a sentence a few words past an excerpt's limit, a post whose feed
gives only a link.
"""

from __future__ import annotations

import email
import email.policy
import html as html_module
import json
import re
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

from starlette.testclient import TestClient

from digest.configfile import load_settings
from digest.storage import Database
from digest.web import make_app
from tests.conftest import run_cli
from tests.servers import FeedServer, SMTPSink
from tests.week_helpers import ESSAY, FOLDED, TITLES, build_week, week_end

INTRO = "A week of *harnesses* and terminals: start with [Lil'Log](https://lilianweng.example/)."
NOTE = "Why it matters: the **evaluators** are the weak point of every self-improving loop."
LEAD = "Weekend Reading #1: Harness Engineering for Self-Improvement"


def parts(raw: bytes) -> tuple[EmailMessage, str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    crlf = "\r\n"
    return msg, text.get_content().replace(crlf, "\n"), html.get_content().replace(crlf, "\n")


def titles_in_order(text: str) -> list[str]:
    """The week's titles in the order the text part names them."""
    flat = " ".join(text.split())
    found = sorted((flat.find(" ".join(t.split())), t) for t in TITLES)
    assert all(at >= 0 for at, _t in found), [t for at, t in found if at < 0]
    return [t for _at, t in found]


def test_the_curators_week_is_previewed_then_sent_as_previewed(
    workdir: Path, sqlite_url: str, http: FeedServer, smtp: SMTPSink
) -> None:
    env = build_week(workdir, sqlite_url, http, week_end())
    assert len(http.hits("/posts/harness/")) == 1  # the essay's page: 404
    env.update(DIGEST_SMTP_HOST="127.0.0.1", DIGEST_SMTP_PORT=str(smtp.port))
    env.update(DIGEST_WEB_SIGNUP="true", DIGEST_NEWSLETTER_POSTAL_ADDRESS="1 Main St, Springfield")
    assert run_cli(["intro", "-"], env, stdin=INTRO + "\n").exit_code == 0
    picked = run_cli(["pick", "https://lilianweng.example/posts/harness/", "--note", NOTE], env)
    assert picked.exit_code == 1 and "no stored post" in picked.output  # not its URL here
    essay_url = http.url("/posts/harness/")
    picked = run_cli(["pick", essay_url, "--note", NOTE], env)
    assert picked.exit_code == 0, picked.output
    listed = run_cli(["picks"], env).output
    assert f"intro: {INTRO}" in listed and f"note: {NOTE}" in listed and ESSAY in listed
    assert run_cli(["subscribers", "add", "ann@example.com"], env).exit_code == 0

    # The preview, by default what a send now would mail, and says so.
    built = run_cli(["preview", "--json", "-o", "week.html"], env)
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["end_kind"] == "now" and "as `digest send` run now would" in summary["ends"]
    assert summary["subject"] == LEAD and summary["posts"] == len(TITLES)
    essay = next(row for row in summary["scores"] if row["title"] == ESSAY)
    # Unknown length: no minutes, and the length part is the week's median, not the minimum.
    assert essay["signals"]["minutes"] is None and essay["note"] == NOTE
    known = [r for r in summary["scores"] if r["signals"]["minutes"] is not None]
    lengths = sorted(r["parts"]["length"] for r in known)
    # Known: the teasers whose pages were read, the posts their feeds give whole; not the
    # essay, nor the post whose feed gives only its address (Zola's <content> of one link).
    assert len(known) == len(TITLES) - 2
    assert essay["parts"]["length"] == lengths[len(lengths) // 2] > min(lengths)
    preview_text = run_cli(["preview", "--format", "text", "-o", "-"], env).stdout
    preview_html = (workdir / "week.html").read_text()

    sent = run_cli(["send"], env)
    assert sent.exit_code == 0, sent.output
    [raw] = smtp.raw
    msg, text, html = parts(raw)
    # What was previewed is what was sent: the same subject, posts and order.
    assert msg["Subject"] == summary["subject"] == LEAD
    assert titles_in_order(text) == titles_in_order(preview_text)
    assert titles_in_order(text)[0] == ESSAY  # the lead pick

    for part in (text, preview_text):
        flat = " ".join(part.split())
        assert "A week of _harnesses_ and terminals: start with Lil'Log" in flat
        assert "*evaluators* are the weak point" in flat
        essay_lines = flat[flat.index(ESSAY) : flat.index(ESSAY) + 200]
        assert "min read" not in essay_lines  # no "1 min read" for an unknown length
        assert "\n-- \n" in part and "Archive:     https://news.example/" in part
        assert "Forwarded this? Subscribe: https://news.example/subscribe" in part
        assert "1 Main St, Springfield" in part
    for page in (html, preview_html):
        assert "<em>harnesses</em>" in page and 'href="https://lilianweng.example/"' in page
        assert "<strong>evaluators</strong>" in page
        assert re.search(r"<h1[^>]*>Weekend Reading #1</h1>", page)
        assert len(re.findall(r"<h2[^>]*>", page)) == 3  # picks, Machine Learning, Systems
        assert len(re.findall(r"<h3[^>]*>", page)) >= 8
        assert "<!--[if mso]><table" in page and 'width="600"' in page
        assert '<meta name="x-apple-disable-message-reformatting">' in page
        assert page.index("Read it on the web") < page.index("<h1")
        assert re.search(r"Forwarded this\? <a [^>]*href=\"https://news.example/subscribe\"", page)
        assert "1\u00a0min\u00a0read" not in page.split(ESSAY)[1][:600]
    # Every post of the week is named in both parts: the folded blog's too, one a line.
    assert all(" ".join(t.split()) in " ".join(text.split()) for t in TITLES)
    unescaped = html.replace("&#39;", "'").replace("&quot;", '"').replace("&amp;", "&")
    assert all(t in unescaped for t in TITLES)
    assert f"Also from {FOLDED}" in html and f"Also from {FOLDED}:" in text
    assert "more from" not in html  # nothing left unnamed

    # The web page of the recorded issue keeps the intro and the note, with the web's footer.
    settings = load_settings(env=env)
    with TestClient(make_app(Database(sqlite_url), settings)) as client:
        web = client.get("/issues/1").text
        atom = client.get("/feed.xml").text  # its entry: the web version too
    assert "All issues</a>" in html_module.unescape(atom) and "Unsubscribe" not in atom
    assert "<em>harnesses</em>" in web and "<strong>evaluators</strong>" in web
    assert "Unsubscribe" not in web and "Forwarded this?" not in web
    assert 'href="https://news.example/subscribe"' in web and "All issues" in web
    # The curator's words are spent: the next issue starts afresh.
    assert "no intro, picks or skips" in run_cli(["picks"], env).output


def test_pick_and_skip_refuse_what_the_coming_issue_cannot_hold(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    env = build_week(workdir, sqlite_url, http, week_end())
    old = run_cli(["skip", "https://jvns.example/blog/2025/upgrading-hugo/"], env)
    assert old.exit_code == 1 and old.output.count("\n") == 1
    assert "cannot skip https://jvns.example/blog/2025/upgrading-hugo: it is dated" in old.output
    assert "outside the coming issue's window" in old.output
    none = run_cli(["pick", "https://nowhere.example/post"], env)
    assert none.exit_code == 1 and "no stored post has this URL" in none.output
    quote = http.url("/simonwillison/2026/quoting-dean-w-ball/#atom-everything")
    assert run_cli(["skip", quote], env).exit_code == 0
    assert run_cli(["send"], env).exit_code == 0  # sending off: recorded
    sent = run_cli(["pick", "https://scattered.example/writing/0042/"], env)
    assert sent.exit_code == 1 and "it went out in issue #1 already" in sent.output
    # The skipped post went out in no issue, and never will.
    again = run_cli(["skip", quote], env)
    assert again.exit_code == 1 and "went out in issue #1" in again.output


def test_intro_from_stdin_shown_and_cleared(workdir: Path, sqlite_url: str) -> None:
    env = {"DIGEST_DATABASE_URL": sqlite_url}
    assert run_cli(["intro"], env).output == "no intro for the coming issue\n"
    said = run_cli(["intro", "-"], env, stdin="Hello *you*.\nSee [this](https://a.example).\n")
    assert said.exit_code == 0
    assert said.output == "intro for the coming issue: Hello _you_. See this (https://a.example).\n"
    assert json.loads(run_cli(["intro", "--json"], env).output) == {
        "intro": "Hello *you*.\nSee [this](https://a.example)."
    }
    assert run_cli(["intro", "--clear"], env).output == "no intro for the coming issue (cleared)\n"
    empty = run_cli(["intro", ""], env)
    assert empty.exit_code == 1 and "--clear" in empty.output


def test_after_an_old_week_sent_by_hand_the_next_issue_holds_two_weeks_at_most(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    end = week_end()
    env = build_week(workdir, sqlite_url, http, end)
    long_ago = (end - timedelta(days=129)).date().isoformat()
    old = run_cli(["send", "--as-of", long_ago], env)  # the week of Lil'Log's older post
    assert old.exit_code == 0 and "issue #1 recorded" in old.output
    built = json.loads(run_cli(["preview", "--json", "-o", "next.html"], env).stdout)
    start = built["window_start"]
    assert built["number"] == 2
    assert start >= (end - timedelta(days=14, minutes=2)).isoformat()  # not 120 days
    assert built["posts"] == len(TITLES)


def test_an_empty_first_week_points_at_the_newest_post(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    end = week_end() - timedelta(days=30)  # the week's posts are a month old
    env = build_week(workdir, sqlite_url, http, end)
    out = run_cli(["preview"], env)
    assert out.exit_code == 0
    first, hint = out.output.splitlines()
    assert first.startswith("no new posts from ") and "issue #1 would not be sent" in first
    day = (end - timedelta(days=0.3)).date().isoformat()
    assert f"`digest preview --as-of {day}` shows the week that ends that day" in hint
    shown = run_cli(["preview", "--as-of", day, "--json", "-o", "then.html"], env)
    assert json.loads(shown.stdout)["posts"] >= 1


def test_an_as_of_out_of_range_is_one_line(workdir: Path, sqlite_url: str) -> None:
    env = {"DIGEST_DATABASE_URL": sqlite_url}
    for command in ("preview", "send"):
        for day in ("0001-01-06", "9999-12-31"):
            out = run_cli([command, "--as-of", day], env)
            assert out.exit_code == 1, out.output
            assert (
                out.output
                == f"Error: --as-of: {day} is out of range: give a date from 1970 to 9000\n"
            )
