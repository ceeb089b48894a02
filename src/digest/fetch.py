"""HTTP for feeds: one polite conditional GET with manual redirects, a size cap and a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.policy import parse_retry_after
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


class HostLimiter:
    """At most ``per_host`` requests in flight to one host name, ``total`` in all."""

    def __init__(self, per_host: int, total: int | None = None) -> None:
        self.per_host = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._total = asyncio.Semaphore(total) if total else None

    @contextlib.asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.per_host)
        # The host first: a request queued behind a busy host must not hold a global slot.
        async with self._hosts[host]:
            if self._total is None:
                yield
                return
            async with self._total:
                yield


def make_client(
    settings: FeedsSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One client for a whole poll: keep-alive connections shared by every feed of a host."""
    seconds = settings.timeout.total_seconds()
    return httpx.AsyncClient(
        transport=transport,
        headers={"User-Agent": settings.user_agent},
        limits=httpx.Limits(
            max_connections=settings.concurrency,
            max_keepalive_connections=settings.concurrency,
            keepalive_expiry=30,
        ),
        timeout=httpx.Timeout(seconds),
        follow_redirects=False,
    )


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float,
    max_bytes: int,
    user_agent: str,
    limiter: HostLimiter | None = None,
    now: datetime | None = None,
) -> FetchedFeed:
    """GET one feed, conditionally; every final status comes back, only network trouble raises.

    A 200 brings the (decoded) body; 304 and error statuses bring none. Raises FetchError on
    a timeout (the whole request, redirects and body included, within ``timeout`` seconds), a
    body over ``max_bytes``, too many redirects or any network error.

    With a ``limiter``, the request waits for a slot of its host before its deadline starts
    (redirect hops, rare, are not limited). ``now`` is what Retry-After seconds count from.
    """
    headers = {"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    async with _slot(limiter, url):
        started = time.monotonic()
        with fetch_errors(url, timeout):
            async with asyncio.timeout(timeout):
                return await _follow(client, url, headers, max_bytes, started, now or _utcnow())
    raise AssertionError("unreachable")  # pragma: no cover - for type checkers


async def _follow(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    max_bytes: int,
    started: float,
    now: datetime,
) -> FetchedFeed:
    current, permanent, hops = url, True, 0
    while True:
        async with client.stream("GET", current, headers=headers) as resp:
            location = resp.headers.get("location")
            if resp.status_code in REDIRECTS and location:
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise FetchError(url, f"more than {MAX_REDIRECTS} redirects", resp.status_code)
                permanent = permanent and resp.status_code in PERMANENT
                current = str(resp.url.join(location.strip()))
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
                retry_after=parse_retry_after(resp.headers.get("retry-after"), now),
                elapsed_ms=int((time.monotonic() - started) * 1000),
            )


@contextlib.asynccontextmanager
async def _slot(limiter: HostLimiter | None, url: str) -> AsyncIterator[None]:
    if limiter is None:
        yield
        return
    async with limiter.slot(url):
        yield


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def read_capped(resp: httpx.Response, max_bytes: int, url: str) -> bytes:
    """The decoded body, streamed; stops reading as soon as it passes ``max_bytes``."""
    too_big = FetchError(url, f"body larger than {max_bytes} bytes", resp.status_code)
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(resp: httpx.Response) -> None:
    """Read a short body we don't need so the connection can be reused (a 304, an error page)."""
    declared = resp.headers.get("content-length", "")
    if resp.status_code == 304 or (declared.isdigit() and int(declared) <= DRAIN_BYTES):
        await resp.aread()


@contextlib.contextmanager
def fetch_errors(url: str, timeout: float) -> Iterator[None]:
    """Turn httpx's and asyncio's exceptions into one-line FetchErrors."""
    try:
        yield
    except FetchError:
        raise
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
