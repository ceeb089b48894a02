"""HTTP for feeds: one polite conditional GET with manual redirects, a size cap and a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import h11
import httpx

from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.ingest.policy import parse_retry_after
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
KEEPALIVE_S = 30.0
# Response headers the parser may use (charset, base URL); kept small to pickle cheaply.
KEPT_HEADERS = ("content-type", "content-location", "content-language")


def make_client(
    settings: FeedsSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One client for a whole poll: keep-alive connections shared by every feed of a host.

    Without a ``transport``, requests go through FeedTransport (a fraction of the CPU of
    httpx's default one), unless the environment names a proxy, which only the default
    transport honours.
    """
    seconds = settings.timeout.total_seconds()
    if transport is None and not env_proxies():
        transport = FeedTransport(max_idle=settings.concurrency, keepalive_expiry=KEEPALIVE_S)
    return httpx.AsyncClient(
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
    now: datetime | None = None,
    accept: str = ACCEPT,
) -> FetchedFeed:
    """GET one feed (or a post's page), conditionally; every final status comes back, only
    network trouble raises.

    A 200 brings the (decoded) body; 304 and error statuses bring none. Raises FetchError on
    a timeout (the whole request, redirects and body included, within ``timeout`` seconds), a
    body over ``max_bytes``, too many redirects or any network error.

    ``now`` is what Retry-After seconds count from; ``accept`` asks for something other
    than a feed (a post's page). How many requests run at once, per host
    and in all, is the caller's business (poll's dispatcher).
    """
    headers = {"User-Agent": user_agent, "Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
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


# --- a lean HTTP/1.1 transport -------------------------------------------------------------


class FeedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with h11: keep-alive per host, no more.

    A poll makes thousands of small GETs, and httpx's default transport (httpcore over anyio)
    costs about 1.5 ms of CPU for each, on the one core the event loop has; this one costs
    a fifth of that. No HTTP/2 and no proxies (make_client keeps the default transport when
    the environment names one). Concurrency is the poll dispatcher's job, not the pool's.
    """

    def __init__(self, max_idle: int = 32, keepalive_expiry: float = KEEPALIVE_S) -> None:
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url}'")
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        reused = self._take_idle(key)
        if reused is not None:
            try:
                return await reused.send(self, key, request, body, timeouts)
            except _StaleConnectionError:
                pass  # the server closed the kept-alive connection: one fresh try
        conn = await self._connect(key, timeouts.get("connect"))
        try:
            return await conn.send(self, key, request, body, timeouts)
        except _StaleConnectionError as e:
            raise httpx.RemoteProtocolError(
                "server closed the connection without a response"
            ) from e

    async def _connect(self, key: tuple[str, str, int], timeout: float | None) -> _Connection:
        scheme, host, port = key
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            context = self._ssl
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError as e:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from e
        except OSError as e:
            raise httpx.ConnectError(str(e) or type(e).__name__) from e
        return _Connection(reader, writer)

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            conn = pool.pop()
            self._idle_count -= 1
            if conn.usable(now - self.keepalive_expiry):
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        if self._idle_count >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(conn)
        self._idle_count += 1

    async def aclose(self) -> None:
        for pool in self._idle.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
        self._idle_count = 0


class _StaleConnectionError(Exception):
    """A reused connection was closed by the server before any of the response came."""


class _Connection:
    """One socket and its h11 state machine."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0
        self.used = False

    def usable(self, fresh_after: float) -> bool:
        return (
            self.idle_since > fresh_after
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()

    async def send(
        self,
        transport: FeedTransport,
        key: tuple[str, str, int],
        request: httpx.Request,
        body: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        reused, self.used = self.used, True
        try:
            head = h11.Request(
                method=request.method, target=request.url.raw_path, headers=request.headers.raw
            )
            data = self.h11.send(head)
            if body:
                data += self.h11.send(h11.Data(data=body))
            data += self.h11.send(h11.EndOfMessage())
            self.writer.write(data)
            event = await self._next(timeouts.get("read"), reused)
            while not isinstance(event, h11.Response):
                event = await self._next(timeouts.get("read"), False)
        except BaseException:
            self.close()
            raise
        stream = _Body(transport, key, self, timeouts.get("read"))
        return httpx.Response(
            event.status_code,
            headers=event.headers.raw_items(),
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": event.reason},
        )

    async def _next(self, timeout: float | None, reused: bool = False) -> object:
        """The next h11 event, reading from the socket as needed.

        ``reused``: the connection was kept alive and this is the first read of a response; a
        close before any byte means the server dropped it while idle (_StaleConnectionError).
        """
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise httpx.RemoteProtocolError(str(e)) from e
            if event is not h11.NEED_DATA:
                if isinstance(event, h11.ConnectionClosed):
                    if reused:
                        raise _StaleConnectionError()
                    raise httpx.RemoteProtocolError("server disconnected without a response")
                return event
            try:
                async with asyncio.timeout(timeout):
                    chunk = await self.reader.read(65536)
            except TimeoutError as e:
                raise httpx.ReadTimeout("reading the response timed out") from e
            except OSError as e:
                if reused:
                    raise _StaleConnectionError() from e
                raise httpx.ReadError(str(e) or type(e).__name__) from e
            if not chunk and self.h11.their_state is h11.SEND_RESPONSE:
                if reused:
                    raise _StaleConnectionError()
                raise httpx.RemoteProtocolError("server disconnected without a response")
            self.h11.receive_data(chunk)


class _Body(httpx.AsyncByteStream):
    """A response body streamed off its connection; the connection goes back when it is done."""

    def __init__(
        self,
        transport: FeedTransport,
        key: tuple[str, str, int],
        conn: _Connection,
        timeout: float | None,
    ) -> None:
        self.transport, self.key, self.conn, self.timeout = transport, key, conn, timeout
        self.complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while True:
                event = await self.conn._next(self.timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.complete = True
                    return
        except BaseException:
            self.conn.close()
            raise

    async def aclose(self) -> None:
        conn = self.conn
        if self.complete and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            self.transport._give_back(self.key, conn)
        else:
            conn.close()
