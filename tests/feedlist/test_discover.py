"""Feed discovery against a loopback server: alternate links, common paths, sniffing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from digest.config import FeedsSettings
from digest.feedlist.discover import (
    alternate_links,
    common_feed_urls,
    discover_sites,
    looks_like_feed,
)
from digest.settingvalues import parse_networks
from tests.conftest import LOOPBACK, run_cli
from tests.servers import FeedServer, Response

RSS = b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel/></rss>'
ATOM = (
    b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- hi -->\n<feed xmlns="http://www.w3.org/2005/Atom"/>'
)
RDF = b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>'
JSON_FEED = b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": []}'
HTML = b"<!DOCTYPE html><html><head><title>Home</title></head><body>Hello</body></html>"


def page(head: str) -> Response:
    body = f"<!doctype html><html><head>{head}</head><body>x</body></html>".encode()
    return Response(200, body, {"Content-Type": "text/html; charset=utf-8"})


def xml(body: bytes) -> Response:
    return Response(200, body, {"Content-Type": "application/xml"})


def find(home: str, timeout: float = 2.0, allow: str = LOOPBACK) -> str | None:
    """The feed discovery finds for one home page, under the network policy (loopback open)."""
    feeds = FeedsSettings(timeout=timedelta(seconds=timeout), allow_networks=parse_networks(allow))
    return discover_sites([home], feeds).feeds[home]


def test_alternate_link_relative_href(http: FeedServer) -> None:
    http.route(
        "/blog/",
        page(
            '<link rel="stylesheet" href="/s.css">'
            '<link rel="alternate" type="application/rss+xml" title="Comments" href="comments.xml">'
            '<LINK REL="Alternate" TYPE="application/atom+xml" HREF="atom.xml">'
        ),
    )
    http.route("/blog/comments.xml", xml(RSS))
    http.route("/blog/atom.xml", xml(ATOM))
    assert find(http.url("/blog/")) == http.url("/blog/atom.xml")
    assert not http.hits("/blog/comments.xml")  # the posts feed is preferred over comments


def test_broken_alternate_falls_back_to_common_paths(
    http: FeedServer,
) -> None:
    # eatonphil.com's case: the advertised /rss.xml does not exist.
    http.route("/", page('<link rel="alternate" type="application/rss+xml" href="/rss.xml">'))
    http.route("/feed", page(""))  # an HTML page at /feed is not a feed
    http.route("/atom.xml", xml(ATOM))
    assert find(http.url("/")) == http.url("/atom.xml")
    assert http.hits("/rss.xml") and http.hits("/feed")


def test_common_path_next_to_the_home_page(http: FeedServer) -> None:
    # brendangregg.com/blog keeps its feed at /blog/rss.xml
    http.route("/blog", page(""))
    http.route("/blog/rss.xml", xml(RDF))
    assert find(http.url("/blog")) == http.url("/blog/rss.xml")


def test_json_feed_and_base_href(http: FeedServer) -> None:
    http.route(
        "/home",
        page(
            '<base href="/site/"><link rel="alternate" type="application/feed+json" '
            'href="feed.json">'
        ),
    )
    http.route("/site/feed.json", Response(200, JSON_FEED, {"Content-Type": "application/json"}))
    assert find(http.url("/home")) == http.url("/site/feed.json")


def test_home_page_that_is_a_feed_after_a_redirect(http: FeedServer) -> None:
    http.route("/old", Response(301, b"", {"Location": "/index.xml"}))
    http.route("/index.xml", xml(RSS))
    assert find(http.url("/old")) == http.url("/index.xml")


def test_html_only_site_has_no_feed(http: FeedServer) -> None:
    http.route("/", Response(200, HTML, {"Content-Type": "text/html"}))
    assert find(http.url("/")) is None
    asked = {r.path for r in http.requests}
    assert {"/", "/feed", "/rss.xml", "/atom.xml", "/index.xml", "/feed.xml", "/rss/"} <= asked


def test_timeouts_and_dead_hosts_are_none(http: FeedServer) -> None:
    http.route("/", Response(200, HTML, delay=1.0))
    http.route("/feed", Response(200, RSS, delay=1.0))
    assert find(http.url("/"), timeout=0.2) is None
    assert find("http://127.0.0.1:9/", timeout=0.2) is None  # nothing listens on port 9
    assert find("http://[not a host/", timeout=0.2) is None


def test_alternate_links_ignores_non_feeds_and_odd_schemes() -> None:
    html = (
        '<link rel="alternate" hreflang="de" href="/de/">'
        '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
        '<link rel="alternate feed" type="application/rss+xml; charset=utf-8" '
        'href="//cdn.example/f">'
        "<link rel=alternate type=application/atom+xml>"
    )
    assert alternate_links(html, "https://site.example/a/b") == ["https://cdn.example/f"]


def test_common_feed_urls_folder_then_root() -> None:
    urls = common_feed_urls("https://x.example/laurie/blog/archive.html")
    assert urls[0] == "https://x.example/laurie/blog/feed"
    assert urls[7] == "https://x.example/feed"
    assert len(urls) == 14
    root_only = common_feed_urls("https://x.example")
    assert root_only[:3] == [
        "https://x.example/feed",
        "https://x.example/rss.xml",
        "https://x.example/atom.xml",
    ]
    assert len(root_only) == 7


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (RSS, True),
        (ATOM, True),
        (RDF, True),
        (JSON_FEED, True),
        (b'<?xml version="1.0"?><!DOCTYPE rss><rss/>', True),
        (HTML, False),
        (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/"/>', False),
        (b'{"version": 1}', False),
        (b"{not json", False),
        (b"", False),
    ],
)
def test_looks_like_feed(body: bytes, expected: bool) -> None:
    assert looks_like_feed(body) is expected


def test_hostile_hrefs_are_skipped() -> None:
    html = (
        '<base href="http://[broken/">'
        '<link rel="alternate" type="application/rss+xml" href="http://[::1/feed">'
        '<link rel="alternate" type="application/rss+xml" href="/ok.xml">'
    )
    assert alternate_links(html, "https://site.example/") == ["https://site.example/ok.xml"]


def test_a_dripping_home_page_costs_the_timeout_not_minutes(http: FeedServer) -> None:
    http.route("/", Response(200, HTML * 3, {"Content-Type": "text/html"}, drip=0.5))
    http.route("/feed", xml(RSS))
    began = time.monotonic()
    assert find(http.url("/"), timeout=1.0) == http.url("/feed")
    assert time.monotonic() - began < 5


@pytest.fixture
def elsewhere() -> Iterator[FeedServer]:
    """Another host, on 127.0.0.1, which the policy of these tests (127.0.0.2 only) refuses."""
    server = FeedServer("127.0.0.1")
    server.route("/feed.xml", xml(RSS))
    yield server
    server.close()


@pytest.fixture
def home() -> Iterator[FeedServer]:
    server = FeedServer("127.0.0.2")
    yield server
    server.close()


def test_discovery_keeps_to_the_allowed_networks(home: FeedServer, elsewhere: FeedServer) -> None:
    home.route("/moved", Response(301, b"", {"Location": elsewhere.url("/feed.xml")}))
    home.route(
        "/blog/",
        page(
            f'<link rel="alternate" type="application/rss+xml" href="{elsewhere.url("/feed.xml")}">'
        ),
    )
    assert find(home.url("/moved"), allow="127.0.0.2/32") is None
    assert find(home.url("/blog/"), allow="127.0.0.2/32") is None
    assert elsewhere.requests == []
    feeds = FeedsSettings(allow_networks=parse_networks("127.0.0.2/32"))
    found = discover_sites([home.url("/blog/"), home.url("/nothing/")], feeds)
    assert found.why_not(home.url("/blog/")).startswith(  # its alternate link was refused
        "no feed found: the network policy refused to connect to 127.0.0.1"
    )
    assert found.why_not(home.url("/nothing/")) == "no feed found"  # 404s, nothing refused


def test_opml_build_never_writes_a_feed_the_policy_refuses(
    workdir: Path, home: FeedServer, elsewhere: FeedServer
) -> None:
    home.route("/", Response(302, b"", {"Location": elsewhere.url("/feed.xml")}))
    (workdir / "lists").mkdir()
    (workdir / "lists" / "ml.md").write_text(f"## ML\n\n- [Moved]({home.url('/')})\n")
    env = {"DIGEST_FEEDS_ALLOW_NETWORKS": "127.0.0.2/32", "DIGEST_FEEDS_TIMEOUT": "2s"}
    result = run_cli(["opml", "build"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr == (  # issue 24: it said "no feed found" alone
        f"warning: Moved ({home.url('/')}): no feed found: the network policy refused to connect "
        "to 127.0.0.1: a loopback address; feeds.allow_networks opens a range\n"
    )
    assert elsewhere.url("/") not in (workdir / "feeds.opml").read_text()
    assert elsewhere.requests == []
