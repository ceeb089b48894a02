"""Feeds that attack: compression bombs, redirects into the network, pages on other ports.
Real loopback servers; a real `digest poll` process where its memory is measured, the CLI in
process elsewhere; SQLite (the database is not the subject: tests/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import digest_env, run_cli
from tests.poll_helpers import Item, rss, write_opml
from tests.servers import FeedServer, Response

BOMBS = Path(__file__).parent / "data" / "bombs"
RSS = {"Content-Type": "application/rss+xml"}
# Peak memory of a `digest poll` of two feeds, bomb or no bomb (measured: ~75 MB; a bomb
# decoded whole took 2.1 GB and 4.3 GB before decoding was bounded).
POLL_PEAK_MB = 200


def peak_run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    """Run `digest ARGS` as a real process: exit status, stdout and its peak RSS in MB (the
    wrapper's only child is digest, so RUSAGE_CHILDREN is digest's peak)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
        "print(done.stdout, end='')\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(done.returncode)\n"
    )
    full = digest_env(env)
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "digest", *args]
    proc = subprocess.run(cmd, env=full, cwd=cwd, capture_output=True, text=True, timeout=120)
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    return proc.returncode, proc.stdout, peak_kb / 1024


@pytest.mark.parametrize(
    ("bomb", "encoding", "error"),
    [
        ("zeros-2gib.br", "br", "once decompressed"),
        ("zeros-4gib.gz.gz", "gzip, gzip", "stacked content encodings refused: gzip, gzip"),
    ],
)
def test_a_compression_bomb_costs_one_feed_and_little_memory(
    workdir: Path, sqlite_url: str, http: FeedServer, bomb: str, encoding: str, error: str
) -> None:
    body = (BOMBS / bomb).read_bytes()
    http.route("/bomb.xml", Response(200, body, {**RSS, "Content-Encoding": encoding}))
    http.route("/fine.xml", Response(200, rss(3), RSS))
    write_opml(
        workdir / "feeds.opml",
        [("ML", "Bomb", http.url("/bomb.xml")), ("ML", "Fine", http.url("/fine.xml"))],
    )
    env = {"DIGEST_DATABASE_URL": sqlite_url}
    code, out, peak_mb = peak_run(["poll", "--json"], env, workdir)
    assert code == 0
    summary = json.loads(out)
    assert (summary["new_posts"], summary["errors"]) == (3, 1)
    assert peak_mb < POLL_PEAK_MB
    feeds = json.loads(run_cli(["feeds", "--json"], env).stdout)
    [bombed] = [f for f in feeds if f["url"].endswith("/bomb.xml")]
    assert error in bombed["error"]


@pytest.fixture
def internal() -> Iterator[FeedServer]:
    """A service on another loopback address than the feeds' (127.0.0.1, not 127.0.0.2)."""
    server = FeedServer("127.0.0.1")
    server.route("/secret", Response(200, rss([Item("s", "Internal secret", "https://x/s")])))
    yield server
    server.close()


@pytest.fixture
def outside() -> Iterator[FeedServer]:
    """The feeds' server, on 127.0.0.2: the only address feeds.allow_networks opens."""
    server = FeedServer("127.0.0.2")
    yield server
    server.close()


def test_a_redirect_into_the_network_is_refused_and_not_stored(
    workdir: Path, sqlite_url: str, outside: FeedServer, internal: FeedServer
) -> None:
    target = internal.url("/secret")
    outside.route("/feed.xml", Response(301, b"", {"Location": target}))
    write_opml(workdir / "feeds.opml", [("ML", "Mover", outside.url("/feed.xml"))])
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_ALLOW_NETWORKS": "127.0.0.2/32"}
    polled = run_cli(["poll", "--json"], env)
    assert polled.exit_code == 0, polled.output
    assert json.loads(polled.stdout)["errors"] == 1
    [feed] = json.loads(run_cli(["feeds", "--json"], env).stdout)
    assert feed["url"] == outside.url("/feed.xml")  # the 301 was not stored
    assert feed["error"] == (
        "refused to connect to 127.0.0.1: a loopback address; feeds.allow_networks opens a range"
    )
    assert internal.requests == [] and feed["posts"] == 0


def test_without_allow_networks_loopback_feeds_are_refused(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    http.route("/feed.xml", Response(200, rss(2), RSS))
    write_opml(workdir / "feeds.opml", [("ML", "Local", http.url("/feed.xml"))])
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_FEEDS_ALLOW_NETWORKS": ""}
    assert json.loads(run_cli(["poll", "--json"], env).stdout)["errors"] == 1
    [feed] = json.loads(run_cli(["feeds", "--json"], env).stdout)
    assert "refused to connect to 127.0.0.1: a loopback address" in feed["error"]
    assert http.requests == []


def test_teaser_pages_stay_on_their_feeds_host_and_port(
    workdir: Path, sqlite_url: str, http: FeedServer, internal: FeedServer
) -> None:
    now = datetime.now(UTC)
    teaser = " ".join(["teaser"] * 50)
    other_port = f"http://127.0.0.1:{internal.port}"
    posts = [
        Item("port", "Another port", f"{other_port}/secret", teaser, now - timedelta(hours=3)),
        Item("hop", "Redirected", http.url("/posts/hop.html"), teaser, now - timedelta(hours=2)),
        Item("home", "At home", http.url("/posts/home.html"), teaser, now - timedelta(hours=1)),
    ]
    http.route("/teasers.xml", Response(200, rss(posts, "Teasers"), RSS))
    http.route("/posts/hop.html", Response(302, b"", {"Location": f"{other_port}/secret"}))
    page = b"<html><body><article>" + b"word " * 900 + b"</article></body></html>"
    http.route("/posts/home.html", Response(200, page, {"Content-Type": "text/html"}))
    write_opml(workdir / "feeds.opml", [("ML", "Teasers", http.url("/teasers.xml"))])
    polled = run_cli(["poll", "--json"], {"DIGEST_DATABASE_URL": sqlite_url})
    assert polled.exit_code == 0, polled.output
    # Both servers are on loopback, which the tests allow: the origin rule alone keeps the
    # page requests on the feed's own host and port, redirects included.
    assert internal.requests == []
    assert len(http.hits("/posts/hop.html")) == 1 and len(http.hits("/posts/home.html")) == 1
