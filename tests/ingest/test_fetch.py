"""One feed request: headers, conditional GET, encodings, redirects, statuses, caps and limits."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import brotli
import httpx
import pytest

from digest import __version__
from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.ingest.fetch import fetch_feed, make_client
from digest.ingest.policy import parse_retry_after
from digest.settingvalues import parse_networks
from digest.types import FetchedFeed
from tests.conftest import LOOPBACK
from tests.poll_helpers import rss
from tests.servers import FeedServer, Request, Response

UA = f"digest/{__version__} (+https://github.com/digest-dev/digest)"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FEED = "https://blog.example/feed.xml"


def response(
    status: int, *, content: Any = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    """A response whose body streams as it would off the wire: httpx.Response(content=bytes)
    reads (and decodes) the bytes at once, and fetch reads the raw stream itself."""
    if isinstance(content, bytes):
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content))
    return httpx.Response(status, headers=headers, content=content)  # an async iterator


def mock_client(handler: Callable[[httpx.Request], Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def get(client: httpx.AsyncClient, url: str = FEED, **kw: Any) -> FetchedFeed:
    async def go() -> FetchedFeed:
        async with client:
            return await fetch_feed(
                client,
                url,
                timeout=kw.pop("timeout", 5.0),
                max_bytes=kw.pop("max_bytes", 1_000_000),
                user_agent=UA,
                **kw,
            )

    return asyncio.run(go())


def test_sends_user_agent_accept_and_validators() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response(304, headers={"ETag": '"v2"'})

    got = get(mock_client(handler), etag='"v1"', last_modified="Sun, 01 Mar 2026 10:00:00 GMT")
    headers = seen[0].headers
    assert headers["user-agent"] == UA and "digest" in UA and "https://" in UA
    assert "application/rss+xml" in headers["accept"]
    assert "gzip" in headers["accept-encoding"] and "br" in headers["accept-encoding"]
    assert headers["if-none-match"] == '"v1"'
    assert headers["if-modified-since"] == "Sun, 01 Mar 2026 10:00:00 GMT"
    assert got.not_modified and got.body is None and got.etag == '"v2"'


def test_no_validators_no_conditional_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return response(200, content=b"<rss/>", headers={"Content-Type": "text/xml"})

    got = get(mock_client(handler))
    assert "if-none-match" not in seen[0].headers and "if-modified-since" not in seen[0].headers
    assert got.status_code == 200 and got.body == b"<rss/>"
    assert got.headers == {"content-type": "text/xml"}


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("br", brotli.compress)]
)
def test_compressed_bodies_are_decoded(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    body = rss(20)

    def handler(request: httpx.Request) -> httpx.Response:
        return response(200, content=compress(body), headers={"Content-Encoding": encoding})

    assert get(mock_client(handler)).body == body


def test_corrupt_gzip_is_a_readable_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return response(200, content=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    with pytest.raises(FetchError, match="cannot decode"):
        get(mock_client(handler))


def redirects(chain: dict[str, tuple[int, str]]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        hop = chain.get(str(request.url))
        if hop:
            return response(hop[0], headers={"Location": hop[1]})
        return response(200, content=b"<rss/>")

    return handler


@pytest.mark.parametrize("code", [301, 308])
def test_permanent_redirect_reports_the_new_url(code: int) -> None:
    got = get(mock_client(redirects({FEED: (code, "https://new.example/feed")})))
    assert got.status_code == 200 and got.final_url == "https://new.example/feed"
    assert got.permanent_redirect == "https://new.example/feed"


@pytest.mark.parametrize("code", [302, 303, 307])
def test_temporary_redirect_is_followed_but_not_stored(code: int) -> None:
    got = get(mock_client(redirects({FEED: (code, "/elsewhere.xml")})))
    assert got.final_url == "https://blog.example/elsewhere.xml"  # relative Location resolved
    assert got.body == b"<rss/>" and got.permanent_redirect is None


def test_a_temporary_hop_anywhere_makes_the_chain_temporary() -> None:
    chain = {
        FEED: (301, "https://a.example/f"),
        "https://a.example/f": (302, "https://b.example/f"),
    }
    got = get(mock_client(redirects(chain)))
    assert got.final_url == "https://b.example/f" and got.permanent_redirect is None
    chain = {
        FEED: (301, "https://a.example/f"),
        "https://a.example/f": (308, "https://b.example/f"),
    }
    assert get(mock_client(redirects(chain))).permanent_redirect == "https://b.example/f"


def test_a_pages_redirects_stay_on_its_origin() -> None:
    page = "https://blog.example/posts/1"
    up = {"http://blog.example/posts/1": (301, page)}
    assert get(mock_client(redirects(up)), "http://blog.example/posts/1", same_origin=True).body
    for elsewhere in (
        "https://blog.example:8443/p",
        "https://other.example/p",
        "http://blog.example/p",
    ):
        with pytest.raises(FetchError, match="leaves the page's site"):
            get(mock_client(redirects({page: (302, elsewhere)})), page, same_origin=True)


def test_redirect_loop_is_an_error() -> None:
    chain = {FEED: (301, "https://a.example/f"), "https://a.example/f": (301, FEED)}
    with pytest.raises(FetchError, match="more than 5 redirects"):
        get(mock_client(redirects(chain)))


@pytest.mark.parametrize("code", [404, 410, 500, 503])
def test_error_statuses_come_back_without_a_body(code: int) -> None:
    got = get(mock_client(lambda r: response(code, content=b"oops")))
    assert got.status_code == code and got.body is None and got.retry_after is None


def test_retry_after_seconds_and_http_date() -> None:
    # The fetch brings the header as sent; the policy reads it against the time of the answer.
    got = get(mock_client(lambda r: response(429, headers={"Retry-After": "120"})))
    retry_after = parse_retry_after(got.retry_after, NOW)
    assert got.status_code == 429 and retry_after == NOW + timedelta(seconds=120)
    date = "Sun, 01 Mar 2026 14:00:00 GMT"
    got = get(mock_client(lambda r: response(503, headers={"Retry-After": date})))
    retry_after = parse_retry_after(got.retry_after, NOW)
    assert got.status_code == 503 and retry_after == NOW + timedelta(hours=2)


def test_network_errors_become_fetch_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(FetchError, match="cannot connect: connection refused") as e:
        get(mock_client(handler))
    assert e.value.url == FEED


def test_unsupported_scheme_is_a_fetch_error() -> None:
    client = httpx.AsyncClient()
    with pytest.raises(FetchError, match="not an http"):
        get(client, url="ftp://blog.example/feed.xml")


class Drip:
    """A streamed body that counts what was pulled from it."""

    def __init__(self, chunk: bytes, count: int, pause: float = 0.0) -> None:
        self.chunk, self.count, self.pause = chunk, count, pause
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            if self.pause:
                await asyncio.sleep(self.pause)
            self.sent += len(self.chunk)
            yield self.chunk


def test_body_cap_stops_reading_a_stream_without_length() -> None:
    drip = Drip(b"x" * 65536, count=10_000)  # 655 MB if read to the end
    with pytest.raises(FetchError, match="body larger than 1000000 bytes"):
        get(mock_client(lambda r: response(200, content=drip)), max_bytes=1_000_000)
    assert drip.sent <= 1_000_000 + 65536


def test_body_cap_trusts_a_declared_length_and_reads_nothing() -> None:
    drip = Drip(b"x" * 1024, count=3000)

    def handler(request: httpx.Request) -> httpx.Response:
        return response(200, content=drip, headers={"Content-Length": "3072000"})

    with pytest.raises(FetchError, match="body larger than"):
        get(mock_client(handler), max_bytes=100_000)
    assert drip.sent == 0


def test_a_body_exactly_at_the_cap_is_fine() -> None:
    got = get(mock_client(lambda r: response(200, content=b"y" * 5000)), max_bytes=5000)
    assert got.body == b"y" * 5000


def test_deadline_covers_a_slow_dripping_body() -> None:
    drip = Drip(b"<rss>", count=100, pause=0.05)  # 5 s in all, each chunk quick
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0\.5 s"):
        get(mock_client(lambda r: response(200, content=drip)), timeout=0.5)
    assert time.monotonic() - started < 1.5


# --- against a real HTTP server on 127.0.0.1 ----------------------------------------------


def settings(**values: Any) -> FeedsSettings:
    base = FeedsSettings(allow_networks=parse_networks(LOOPBACK))
    return FeedsSettings(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **values})


def real_get(url: str, feeds: FeedsSettings | None = None, **kw: Any) -> FetchedFeed:
    feeds = feeds or settings()

    async def go() -> FetchedFeed:
        async with make_client(feeds) as client:
            return await fetch_feed(
                client,
                url,
                timeout=feeds.timeout.total_seconds(),
                max_bytes=feeds.max_bytes,
                user_agent=feeds.user_agent,
                **kw,
            )

    return asyncio.run(go())


def test_conditional_get_round_trip(http: FeedServer) -> None:
    body = rss(3)

    def handler(req: Request) -> Response:
        if req.headers.get("if-none-match") == '"abc"':
            return Response(304, headers={"ETag": '"abc"'})
        return Response(
            200, body, {"ETag": '"abc"', "Last-Modified": "Sun, 01 Mar 2026 10:00:00 GMT"}
        )

    http.route("/feed", handler)
    first = real_get(http.url("/feed"))
    assert first.status_code == 200 and first.body == body and first.etag == '"abc"'
    second = real_get(http.url("/feed"), etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified and second.body is None
    hits = http.hits("/feed")
    assert hits[1].headers["if-none-match"] == '"abc"'
    assert hits[1].headers["if-modified-since"] == "Sun, 01 Mar 2026 10:00:00 GMT"
    assert hits[0].headers["user-agent"].startswith("digest/")


def test_gzip_and_brotli_over_the_wire(http: FeedServer) -> None:
    body = rss(20)
    http.route("/gz", Response(200, body, {"X-Gzip": "1"}))
    http.route("/br", Response(200, brotli.compress(body), {"Content-Encoding": "br"}))
    assert real_get(http.url("/gz")).body == body
    assert real_get(http.url("/br")).body == body
    assert "gzip" in http.hits("/gz")[0].headers["accept-encoding"]


def test_slow_server_times_out(http: FeedServer) -> None:
    http.route("/slow", Response(200, rss(1), delay=3))
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        real_get(http.url("/slow"), settings(timeout=timedelta(seconds=0.5)))
    assert time.monotonic() - started < 2


def test_huge_body_errors_fast(http: FeedServer) -> None:
    http.route("/huge", Response(200, b"<rss>" + b"x" * 20_000_000))
    started = time.monotonic()
    with pytest.raises(FetchError, match="body larger than 1048576 bytes"):
        real_get(http.url("/huge"), settings(max_bytes=2**20))
    assert time.monotonic() - started < 2


def test_redirect_statuses_over_the_wire(http: FeedServer) -> None:
    http.route("/new", Response(200, rss(1)))
    for code in (301, 302, 307, 308):
        http.route(f"/r{code}", Response(code, headers={"Location": "/new"}))
        got = real_get(http.url(f"/r{code}"))
        assert got.status_code == 200 and got.final_url == http.url("/new")
        expected = http.url("/new") if code in (301, 308) else None
        assert got.permanent_redirect == expected
