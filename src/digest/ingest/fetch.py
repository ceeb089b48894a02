"""HTTP for feeds: one polite conditional GET with manual redirects, a size cap and a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx

from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.ingest.inflate import BodyError, BoundedBody
from digest.ingest.transport import (
    KEEPALIVE_S,
    CheckedTransport,
    FeedTransport,
    RefusedAddressError,
)
from digest.types import FetchedFeed

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, "
    "application/feed+json;q=0.9, application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
ACCEPT_ENCODING = "gzip, br, deflate"
MAX_REDIRECTS = 5
DRAIN_BYTES = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
PERMANENT = frozenset({301, 308})
# Response headers the parser may use (charset, base URL); kept small to pickle cheaply.
KEPT_HEADERS = ("content-type", "content-location", "content-language")


# The transport of each client make_client made (its only one: no mounts, no proxy of the
# client's own), for _sent to hand requests to directly.
_TRANSPORTS: weakref.WeakKeyDictionary[httpx.AsyncClient, httpx.AsyncBaseTransport] = (
    weakref.WeakKeyDictionary()
)


def make_client(
    settings: FeedsSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One client for a whole poll: keep-alive connections shared by every feed of a host.

    Without a ``transport``, requests go through FeedTransport (a fraction of the CPU of
    httpx's default one), unless the environment names a proxy, which only the default
    transport honours (then CheckedTransport applies the network policy to what this host
    resolves). Either way, only the addresses feeds.allow_networks opens besides public ones.
    """
    seconds = settings.timeout.total_seconds()
    allowed = settings.allow_networks
    if transport is None and env_proxies():
        transport = CheckedTransport(httpx.AsyncHTTPTransport(trust_env=True), allowed)
    elif transport is None:
        transport = FeedTransport(settings.concurrency, KEEPALIVE_S, allowed)
    client = httpx.AsyncClient(
        transport=transport,
        headers={"User-Agent": settings.user_agent},
        limits=httpx.Limits(
            max_connections=settings.concurrency,
            max_keepalive_connections=settings.concurrency,
            keepalive_expiry=KEEPALIVE_S,
        ),
        timeout=httpx.Timeout(seconds),
        follow_redirects=False,
    )
    _TRANSPORTS[client] = transport
    return client


def origin(url: str) -> tuple[str, int | None]:
    """Host and port of a URL, the port None when it is its scheme's default (so an upgrade
    from http to https on the same host keeps the origin)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        port = -1  # a port that is no number matches nothing
    return (parts.hostname or "", None if port in (None, default) else port)


def _downgrade(url: str, to: str) -> bool:
    """https to http: the same host, but no longer the same origin (nor private)."""
    return urlsplit(url).scheme == "https" and urlsplit(to).scheme == "http"


def env_proxies() -> bool:
    """Does the environment ask for a proxy for http or https (HTTP_PROXY, ALL_PROXY, ...)?"""
    return any(scheme in urllib.request.getproxies() for scheme in ("http", "https", "all"))


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float,
    max_bytes: int,
    user_agent: str,
    accept: str = ACCEPT,
    same_origin: bool = False,
) -> FetchedFeed:
    """GET one feed (or a post's page), conditionally; every final status comes back, only
    network trouble raises.

    A 200 brings the (decoded) body; 304 and error statuses bring none. Raises FetchError on
    a timeout (the whole request, redirects and body included, within ``timeout`` seconds), a
    body over ``max_bytes``, too many redirects or any network error.

    ``accept`` asks for something other than a feed (a post's page); ``same_origin`` follows
    redirects only within the URL's own host and port (http may become https). Every hop goes
    to an address the network policy allows (the transport checks). How many requests run
    at once, per host and in all, is the caller's business (ingest.slots).
    """
    headers = {"User-Agent": user_agent, "Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    started = time.monotonic()
    with fetch_errors(url, timeout):
        async with asyncio.timeout(timeout):
            return await _follow(client, url, headers, max_bytes, started, same_origin)
    raise AssertionError("unreachable")  # pragma: no cover - for type checkers


async def fetch_as_configured(
    client: httpx.AsyncClient,
    url: str,
    feeds: FeedsSettings,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = ACCEPT,
    same_origin: bool = False,
) -> FetchedFeed:
    """fetch_feed under the ``feeds`` settings' timeout, size cap and User-Agent: what every
    request made on a feed's behalf shares (the feed, its post pages, discovery, a remote
    OPML file)."""
    return await fetch_feed(
        client,
        url,
        etag=etag,
        last_modified=last_modified,
        timeout=feeds.timeout.total_seconds(),
        max_bytes=feeds.max_bytes,
        user_agent=feeds.user_agent,
        accept=accept,
        same_origin=same_origin,
    )


async def _follow(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    max_bytes: int,
    started: float,
    same_origin: bool,
) -> FetchedFeed:
    current, permanent, hops = url, True, 0
    while True:
        async with _sent(client, current, headers) as resp:
            location = resp.headers.get("location")
            if resp.status_code in REDIRECTS and location:
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise FetchError(url, f"more than {MAX_REDIRECTS} redirects", resp.status_code)
                permanent = permanent and resp.status_code in PERMANENT
                current = str(resp.url.join(location.strip()))
                if same_origin and (origin(current) != origin(url) or _downgrade(url, current)):
                    raise FetchError(url, f"redirect to {current} leaves the page's site: refused")
                await _drain(resp)
                continue
            if resp.is_success:
                body: bytes | None = await read_capped(resp, max_bytes, url)
            else:
                body = None
                await _drain(resp)
            return FetchedFeed(
                url=url,
                status_code=resp.status_code,
                final_url=current,
                permanent_redirect=current if hops and permanent and current != url else None,
                body=body,
                headers={k: resp.headers[k] for k in KEPT_HEADERS if k in resp.headers},
                etag=resp.headers.get("etag"),
                last_modified=resp.headers.get("last-modified"),
                retry_after=resp.headers.get("retry-after"),
                elapsed_ms=int((time.monotonic() - started) * 1000),
            )


@contextlib.asynccontextmanager
async def _sent(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[httpx.Response]:
    """GET ``url`` through the client's transport, the response streamed and closed after.

    Not client.stream(): its request building (merging URL, headers and cookies), cookie
    extraction and auth/redirect machinery cost 80 us of the event loop's CPU per request of
    a feature a feed poll never uses (112-121 -> 32-35 us per 304, measured in a loop). A warm
    poll answers many responses at once on one loop, so each request waits for that of the
    others: the loop thread spent 0.6-0.9 ms per request of a warm poll of 500 feeds.
    ``headers`` are all that is sent (fetch_feed names the User-Agent, Accept and
    Accept-Encoding); the client's timeouts apply, and its transport is the one make_client
    gave it (FeedTransport or CheckedTransport: the network policy checks each hop), known
    from _TRANSPORTS rather than from httpx's private attributes.
    """
    transport = _TRANSPORTS.get(client)
    if transport is None:  # a client make_client did not make: the public way
        async with client.stream("GET", url, headers=headers) as streamed:
            yield streamed
        return
    if client.is_closed:
        raise RuntimeError("the HTTP client was closed")
    request = httpx.Request(
        "GET",
        url,
        headers=headers,
        extensions={"timeout": client.timeout.as_dict()},
    )
    resp = await transport.handle_async_request(request)
    resp.request = request
    try:
        yield resp
    finally:
        await resp.aclose()


async def read_capped(resp: httpx.Response, max_bytes: int, url: str) -> bytes:
    """The decoded body, streamed; stops reading as soon as it passes ``max_bytes``, counted
    on the wire and again as it is decompressed (see inflate.py)."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(url, f"body larger than {max_bytes} bytes", resp.status_code)
    try:
        body = BoundedBody(resp.headers.get("content-encoding"), max_bytes)
        async for chunk in resp.aiter_raw():
            body.feed(chunk)
        return body.result()
    except BodyError as e:
        raise FetchError(url, str(e), resp.status_code) from None


async def _drain(resp: httpx.Response) -> None:
    """Read a short body we don't need so the connection can be reused (a 304, an error page);
    as it came, never decompressed."""
    declared = resp.headers.get("content-length", "")
    if resp.status_code == 304 or (declared.isdigit() and int(declared) <= DRAIN_BYTES):
        async for _chunk in resp.aiter_raw():
            pass


@contextlib.contextmanager
def fetch_errors(url: str, timeout: float) -> Iterator[None]:
    """Turn httpx's and asyncio's exceptions into one-line FetchErrors."""
    try:
        yield
    except FetchError:
        raise
    except RefusedAddressError as e:
        raise FetchError(url, str(e)) from e
    except (TimeoutError, httpx.TimeoutException) as e:
        raise FetchError(url, f"timed out after {timeout:g} s") from e
    except httpx.DecodingError as e:
        raise FetchError(url, f"cannot decode the response body: {e}") from e
    except httpx.ConnectError as e:
        raise FetchError(url, f"cannot connect: {e or type(e).__name__}") from e
    except httpx.UnsupportedProtocol as e:
        raise FetchError(url, f"not an http(s) URL: {e}") from e
    except httpx.HTTPError as e:
        raise FetchError(url, f"{type(e).__name__}: {e}".rstrip(": ")) from e
    except (httpx.InvalidURL, ValueError) as e:
        raise FetchError(url, f"bad URL: {e}") from e
