"""Issue 24, "the operator's first month", end to end through the `digest` command: a blog
removed from a list is gone after `opml build`; a skip rule counts in the next preview with
no poll between; a feed that answered 410 is polled again after `digest feeds retry URL`; a
poll with a feed backing off counts it in its summary; `digest poll --force` fetches it."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from digest.words import show_time
from tests.conftest import run_cli, run_digest
from tests.servers import FeedServer, Response
from tests.test_cli_rules import END, rss

WEEK = ["preview", "--as-of", END.isoformat(), "--format", "text", "-o", "-"]


def write_lists(workdir: Path, blogs: dict[str, str]) -> None:
    (workdir / "lists").mkdir(exist_ok=True)
    (workdir / "lists" / "ml.md").write_text(
        "## ML\n" + "".join(f"- [{name}](https://{name.lower()}.example/) — feed: {rest}\n"
                            for name, rest in blogs.items())
    )  # fmt: skip


def digest(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = run_digest(args, env, cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def feeds_by_title(env: dict[str, str], cwd: Path) -> dict[str, dict[str, object]]:
    """What `digest feeds --json` says (in this process: a look at the state, not a step)."""
    listed = run_cli(["feeds", "--json"], env)
    assert listed.exit_code == 0, listed.output
    return {f["title"]: f for f in json.loads(listed.stdout)}


def test_the_operators_first_month(workdir: Path, http: FeedServer) -> None:
    posts = {
        "links": rss("https://links.example", [("Weeknotes 12", []), ("An essay", [])]),
        "gone": rss("https://gone.example", [("Back again", [])]),
        "flaky": rss("https://flaky.example", [("Steady now", [])]),
        "old": rss("https://old.example", [("Farewell", [])]),
    }
    http.route("/links.xml", Response(200, posts["links"]))
    http.route("/old.xml", Response(200, posts["old"]))
    http.route("/gone.xml", Response(410))
    http.route("/flaky.xml", Response(503))
    blogs = {name.capitalize(): http.url(f"/{name}.xml") for name in posts}
    write_lists(workdir, blogs)
    env = {
        "DIGEST_DATABASE_URL": f"sqlite:///{workdir / 'digest.db'}",
        "DIGEST_FEEDS_FETCH_PAGES": "false",
        "DIGEST_NEWSLETTER_TIMEZONE": "Europe/Paris",  # people's times: in this zone
    }
    assert run_cli(["opml", "build", "--no-discover"], env).exit_code == 0
    first = digest(["poll"], env, workdir)
    assert first.startswith("polled 4 feeds: 3 new posts")
    feeds = feeds_by_title(env, workdir)
    assert feeds["Gone"]["status"] == "gone"
    assert feeds["Flaky"]["next_fetch_at"] is not None  # held back: backing off

    # Week 1: a blog removed from its list is gone from feeds.opml and from `digest feeds`.
    del blogs["Old"]
    write_lists(workdir, blogs)
    built = digest(["opml", "build", "--no-discover"], env, workdir)
    removed = "removed (no list names it; its posts stay in the database)"
    assert f"{removed}: {http.url('/old.xml')}" in built
    assert http.url("/old.xml") not in (workdir / "feeds.opml").read_text()
    old = feeds_by_title(env, workdir)["Old"]
    assert old["active"] is False and old["posts"] == 1  # its posts kept

    # Week 2: a skip rule, and the next preview has no such post, with no poll between.
    assert "Weeknotes 12" in digest(WEEK, env, workdir)
    blogs["Links"] += ' — skip: "(?i)weeknotes"'
    write_lists(workdir, blogs)
    digest(["opml", "build", "--no-discover"], env, workdir)
    requests = len(http.requests)
    preview = digest(WEEK, env, workdir)
    assert "Weeknotes 12" not in preview and "An essay" in preview
    assert len(http.requests) == requests

    # Week 3: the feed that answered 410 is back; `feeds retry URL` makes it polled again.
    http.route("/gone.xml", Response(200, posts["gone"]))
    gone = http.url("/gone.xml")
    retried = digest(["feeds", "retry", gone], env, workdir)
    assert retried.strip() == f"reset Gone <{gone}> (was gone): the next poll fetches it"
    digest(["poll"], env, workdir)
    assert any(r.path == "/gone.xml" for r in http.requests[requests:])
    assert feeds_by_title(env, workdir)["Gone"]["status"] == "ok"

    # Week 4: a poll while a feed backs off says so, and until when; --force fetches it.
    skipping = digest(["poll"], env, workdir)
    until = re.search(
        r"; 1 feed skipped, backing off until (\S+ \S+ CET): --force polls it", skipping
    )
    hold = datetime.fromisoformat(str(feeds_by_title(env, workdir)["Flaky"]["next_fetch_at"]))
    assert until and until[1] == show_time(hold, "Europe/Paris"), skipping
    held = json.loads(digest(["poll", "--json"], env, workdir))
    assert (held["skipped"], held["gone"]) == (1, 0) and held["skipped_until"]
    flaky_before = sum(r.path == "/flaky.xml" for r in http.requests)
    http.route("/flaky.xml", Response(200, posts["flaky"]))
    digest(["poll", "--force"], env, workdir)
    assert sum(r.path == "/flaky.xml" for r in http.requests) == flaky_before + 1
    flaky = feeds_by_title(env, workdir)["Flaky"]
    assert flaky["status"] == "ok", flaky
