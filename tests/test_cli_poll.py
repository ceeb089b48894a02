"""`digest poll` and `digest feeds` end to end: a real process, a real OPML file, real HTTP."""

from __future__ import annotations

import json
import os
import select as io_select
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from digest.models import Post
from digest.storage import Database
from tests.conftest import (
    digest_env,
    poll_while_one_is_held,
    run_cli,
    run_digest,
    session_processes,
    wait_for,
)
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Request, Response


def serve(http: FeedServer) -> None:
    def conditional(req: Request) -> Response:
        if req.headers.get("if-none-match") == '"1"':
            return Response(304, headers={"ETag": '"1"'})
        return Response(200, rss(20, site="https://ml.example"), {"ETag": '"1"', "X-Gzip": "1"})

    http.route("/ml.xml", conditional)
    http.route("/sys.xml", Response(301, headers={"Location": "/sys-new.xml"}))
    http.route("/sys-new.xml", Response(200, rss(5, site="https://sys.example")))
    http.route("/gone.xml", Response(410))
    http.route("/busy.xml", Response(429, headers={"Retry-After": "120"}))
    http.route(
        "/page.xml",
        Response(200, b"<!doctype html><title>x</title>", {"Content-Type": "text/html"}),
    )


def env_for(workdir: Path, db_url: str, http: FeedServer) -> dict[str, str]:
    write_opml(
        workdir / "feeds.opml",
        [
            ("ML", "ML blog", http.url("/ml.xml")),
            ("Systems", "Sys blog", http.url("/sys.xml")),
            ("Systems", "Gone blog", http.url("/gone.xml")),
            ("ML", "Busy blog", http.url("/busy.xml")),
            ("ML", "Page", http.url("/page.xml")),
        ],
    )
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_FEEDS_TIMEOUT": "5s",
    }


@pytest.mark.slow
def test_poll_twice_then_list_feeds(workdir: Path, sqlite_url: str, http: FeedServer) -> None:
    serve(http)
    env = env_for(workdir, sqlite_url, http)

    first = run_digest(["poll", "--json"], env, workdir)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "feeds": 5,
        "new_posts": 25,
        "updated_posts": 0,
        "not_modified": 0,
        "errors": 3,
        "skipped": 0,
        "skipped_until": None,
        "gone": 0,
    }

    second = run_digest(["poll", "--json"], env, workdir)
    assert second.returncode == 0, second.stderr
    # The 410 and the 429 (Retry-After 120 s) are not asked again; the HTML page is (5 min hold).
    summary = json.loads(second.stdout)
    assert summary.pop("skipped_until")  # the 429's Retry-After, or the page's backoff
    assert summary == {
        "feeds": 2,
        "new_posts": 0,
        "updated_posts": 0,
        "not_modified": 2,
        "errors": 0,
        "skipped": 2,
        "gone": 1,
    }
    assert len(http.hits("/gone.xml")) == 1 and len(http.hits("/busy.xml")) == 1
    assert len(http.hits("/sys.xml")) == 1 and len(http.hits("/sys-new.xml")) == 2
    assert http.hits("/ml.xml")[1].headers["if-none-match"] == '"1"'

    listing = run_cli(["feeds", "--json"], env)
    assert listing.exit_code == 0, listing.output
    feeds = {f["title"]: f for f in json.loads(listing.stdout)}
    ml = feeds["ML blog"]
    assert (ml["section"], ml["status"], ml["last_status_code"], ml["error"], ml["posts"]) == (
        "ml",
        "not_modified",
        304,
        None,
        20,
    )
    assert feeds["Sys blog"]["url"] == http.url("/sys-new.xml") and feeds["Sys blog"]["posts"] == 5
    assert (feeds["Gone blog"]["status"], feeds["Gone blog"]["last_status_code"]) == ("gone", 410)
    assert feeds["Busy blog"]["status"] == "backoff" and "429" in feeds["Busy blog"]["error"]
    assert feeds["Page"]["status"] == "error" and feeds["Page"]["error"]
    # Two weeks of requests per feed: a 200 then a 304 for the ML blog; one 410 for the gone.
    ml_fetches = ml["fetches_14_days"]
    assert (ml_fetches["requests"], ml_fetches["not_modified"], ml_fetches["errors"]) == (2, 1, 0)
    assert ml_fetches["bytes"] > 0 and ml_fetches["avg_ms"] >= 0
    gone = feeds["Gone blog"]["fetches_14_days"]
    assert (gone["requests"], gone["errors"], gone["bytes"]) == (1, 1, 0)

    table = run_cli(["feeds", "--errors"], env)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["SECTION", "POSTS", "LAST"]
    rows = [line for line in lines[1:] if not line.startswith(" ")]
    assert len(rows) == 3  # gone, busy, page; what a health says beyond its column goes below
    assert any("gone (410)" in line for line in rows)
    busy = next(k for k, line in enumerate(lines) if "Busy blog" in line)
    assert "backing off" in lines[busy] and lines[busy + 1].lstrip().startswith("until ")


def test_poll_text_summary_and_feeds_table(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    serve(http)
    env = env_for(workdir, sqlite_url, http)
    result = run_cli(["poll"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "polled 5 feeds: 25 new posts, 0 updated, 0 not modified, 3 errors in "
    )
    assert "digest feeds --errors" in result.stdout
    assert "moved permanently" in result.stderr
    table = run_cli(["feeds"], env=env)
    assert table.exit_code == 0
    rows = [line for line in table.stdout.splitlines()[1:] if not line.startswith(" ")]
    assert len(rows) == 5
    ml = next(r for r in rows if "ML blog" in r)
    assert ml.split()[:2] == ["ml", "20"] and " ok " in ml


def test_unreadable_opml_is_one_line_and_exit_1(workdir: Path, sqlite_url: str) -> None:
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_OPML": str(workdir / "missing.opml")}
    result = run_cli(["poll"], env)
    assert result.exit_code == 1 and result.stdout == ""
    assert "missing.opml" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_feeds_on_an_empty_database(workdir: Path, sqlite_url: str) -> None:
    Database(sqlite_url).dispose()
    result = run_cli(["feeds"], env={"DIGEST_DATABASE_URL": sqlite_url})
    assert result.exit_code == 0 and "no feeds yet" in result.output
    result = run_cli(["feeds", "--json"], env={"DIGEST_DATABASE_URL": sqlite_url})
    assert json.loads(result.output) == []


def test_help(workdir: Path) -> None:
    for command in ("poll", "feeds"):
        result = run_cli([command, "--help"])
        assert result.exit_code == 0 and "--json" in result.output


def test_a_broken_but_readable_feed_gets_a_warning_until_it_is_fixed(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    broken = (Path(__file__).parent / "data" / "feeds" / "recoverable.xml").read_bytes()
    http.route("/hand.xml", Response(200, broken, {"Content-Type": "application/rss+xml"}))
    write_opml(workdir / "feeds.opml", [("ML", "Hand written", http.url("/hand.xml"))])
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml")}

    polled = run_cli(["poll", "--json"], env)
    assert polled.exit_code == 0 and json.loads(polled.stdout)["new_posts"] == 1
    [feed] = json.loads(run_cli(["feeds", "--json"], env).stdout)
    assert feed["status"] == "ok" and feed["error"] is None
    assert feed["warning"] and "\n" not in feed["warning"]
    table = run_cli(["feeds"], env).stdout.splitlines()
    assert table[2].strip().startswith("warning: ")

    http.route("/hand.xml", Response(200, rss(2), {"Content-Type": "application/rss+xml"}))
    again = run_cli(["poll", "--json"], env)
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["errors"], json.loads(again.stdout)["new_posts"]) == (0, 2)
    [feed] = json.loads(run_cli(["feeds", "--json"], env).stdout)
    assert feed["warning"] is None and feed["posts"] == 3


@pytest.mark.slow
def test_kill_9_mid_poll_then_a_poll_stores_every_post_once(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    n = 24
    some_feeds(http, workdir / "feeds.opml", "k", n)
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml")}
    # Two parser processes whatever the machine: the kill must find workers to leave behind.
    env["DIGEST_FEEDS_WORKERS"] = "2"
    kill_mid_poll(["poll"], env, workdir, http, n)
    assert len(http.requests) < n  # killed part-way

    again = run_cli(["poll", "--json"], env)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["errors"] == 0
    feeds = json.loads(run_cli(["feeds", "--json"], env).stdout)
    assert len(feeds) == n and {f["posts"] for f in feeds} == {3}
    db = Database(db_url)
    try:
        with db.session() as s:
            keys = s.execute(select(Post.feed_id, Post.key)).all()
            assert len(keys) == 3 * n == len(set(keys))  # every post, none twice
            if db_url.startswith("sqlite"):
                assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        db.dispose()


def some_feeds(http: FeedServer, opml: Path, name: str, n: int) -> None:
    """``n`` feeds of three posts each, listed in ``opml``."""
    for i in range(n):
        site = f"https://{name}{i}.example"
        http.route(f"/{name}{i}.xml", Response(200, rss(3, site=site)))
    write_opml(opml, [("ML", f"{name}{i}", http.url(f"/{name}{i}.xml")) for i in range(n)])


def kill_mid_poll(
    args: list[str], env: dict[str, str], cwd: Path, http: FeedServer, n: int
) -> None:
    """Start `digest ARGS`, kill -9 it once half the feeds are answered (the rest held) and
    its parser workers run; then every process it started (forkserver, workers) must be gone
    within 10 s."""
    http.hold_after(n // 2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        env=digest_env(env),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its session holds it and every process it starts
    )
    try:
        assert http.held.wait(30), "half the feeds never fetched"
        # digest, the forkserver and the two parser workers (the resource tracker may come too).
        wait_for(lambda: len(session_processes(proc.pid)) >= 4, 30, what="the parser workers")
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
        http.release()
    wait_for(lambda: not session_processes(proc.pid), 10, what="no digest process left")


@pytest.mark.slow
def test_kill_9_of_the_daemon_mid_poll_leaves_no_parser_process(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    n = 24
    some_feeds(http, workdir / "feeds.opml", "d", n)
    env = {
        "DIGEST_DATABASE_URL": sqlite_url,
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_FEEDS_WORKERS": "2",
        "DIGEST_WEB_ENABLED": "false",
    }
    kill_mid_poll(["run"], env, workdir, http, n)


def test_a_second_poll_is_refused_while_one_runs(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    some_feeds(http, workdir / "feeds.opml", "p", 8)
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml")}
    held = poll_while_one_is_held(env, workdir, http)  # the first holds the lock meanwhile
    second, out, err = held.second, held.first_out, held.first_err
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.startswith("Error: another poll holds database ")
    assert f": pid {held.first_pid} on " in second.stderr and second.stderr.count("\n") == 1
    assert held.first_code == 0, err
    assert json.loads(out)["new_posts"] == 8 * 3 and json.loads(out)["errors"] == 0
    again = run_cli(["poll", "--json"], env)
    assert again.exit_code == 0 and json.loads(again.stdout)["errors"] == 0


def test_feeds_sort_naturally_and_fit_the_terminal(workdir: Path, sqlite_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from digest.models import Feed

    now = datetime.now(UTC)
    db = Database(sqlite_url)
    with db.session() as s:
        for title, section in [("Blog 10", "ml"), ("Blog 2", "ml"), ("Alpha", "systems")]:
            url = f"https://{title.replace(' ', '').lower()}.example/feed"
            s.add(Feed(source_url=url, url=url, title=title, section=section, active=True,
                       added_at=now, status="error", error_count=1,
                       last_error="HTTP 500 " + "very long error text " * 20))  # fmt: skip
        url = "https://a-blog-with-a-long-name.example/feeds/all.atom.xml"
        held = datetime(2040, 6, 1, 12, 0, tzinfo=UTC)  # 14:00 in Berlin's summer time
        s.add(Feed(source_url=url, url=url, title="Zeta", section="systems", active=True,
                   added_at=now, status="backoff", error_count=2, last_error="HTTP 503",
                   next_fetch_at=held, last_success_at=held - timedelta(days=1)))  # fmt: skip
    db.dispose()
    env = {
        "DIGEST_DATABASE_URL": sqlite_url,
        "COLUMNS": "80",
        "DIGEST_NEWSLETTER_TIMEZONE": "Europe/Berlin",
    }
    table = run_cli(["feeds"], env=env).stdout.splitlines()
    rows = [line for line in table[1:] if not line.startswith(" ")]
    assert [line.split("<")[0].split()[-1] for line in rows] == ["2", "10", "Alpha", "Zeta"]
    assert all(len(line) <= 80 for line in table)
    # What the health column can't hold is on lines of its own, whole but for an error's end:
    # until when a feed backs off, in the newsletter's zone, labelled.
    zeta = table.index(rows[-1])
    assert "2040-05-31 14:00 CEST" in rows[-1] and "backing off" in rows[-1]
    assert table[zeta + 1].strip() == "until 2040-06-01 14:00 CEST: HTTP 503"
    assert table[2].strip().startswith("HTTP 500 very long error text")
    assert table[4].endswith("…")  # the third line of the error ends it
    whole = json.loads(run_cli(["feeds", "--json"], env=env).stdout)
    assert whole[0]["error"] == "HTTP 500 " + "very long error text " * 20
    assert whole[-1]["next_fetch_at"] == "2040-06-01T12:00:00+00:00"  # JSON: UTC
    assert "until 2040-06-01 12:00 UTC" in whole[-1]["health"]


def test_poll_shows_its_progress_on_a_terminal_and_only_there(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    import pty

    some_feeds(http, workdir / "feeds.opml", "t", 6)
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml")}
    piped = run_cli(["poll"], env)  # stderr is no terminal
    assert piped.exit_code == 0 and "feed/s" not in piped.stderr and "\r" not in piped.stderr
    assert piped.stdout.startswith("polled 6 feeds: 18 new posts")

    # Four feeds answer; the last two wait until the line has said it waits on them.
    http.hold_after(4)
    main, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "poll"],
        env=digest_env(env | {"DIGEST_DATABASE_URL": f"{sqlite_url}2"}),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    try:
        while True:
            assert io_select.select([main], [], [], 30)[0], f"nothing shown for 30 s: {seen!r}"
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal's last writer is gone
                break
            if not chunk:
                break
            seen += chunk
            if b"waiting on 1 host" in seen:
                http.release()
    finally:
        http.release()
    assert proc.wait(30) == 0
    os.close(main)
    shown = seen.decode("utf-8", "replace")
    assert "/6" in shown and "new" in shown and "errors" in shown
    assert "waiting on 1 host: 127.0.0.1 (" in shown  # the one site, its requests in flight
    assert proc.stdout is not None and b"polled 6 feeds" in proc.stdout.read()


def test_opml_export_writes_a_moved_feed_at_its_new_url(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    """Issue 24: `opml export` kept a 301'd feed's old URL without a word."""
    serve(http)
    env = env_for(workdir, sqlite_url, http)
    before = run_cli(["opml", "export"], env)  # no database yet: the file as it is, none made
    assert before.exit_code == 0 and http.url("/sys.xml") in before.stdout
    assert not (workdir / "digest.db").exists()
    assert run_cli(["poll"], env).exit_code == 0
    exported = run_cli(["opml", "export"], env)
    assert exported.exit_code == 0
    assert http.url("/sys-new.xml") in exported.stdout
    assert f'xmlUrl="{http.url("/sys.xml")}"' not in exported.stdout
    assert exported.stderr == (
        f"moved permanently: {http.url('/sys.xml')} -> {http.url('/sys-new.xml')} "
        "(exported at its new URL)\n"
    )
