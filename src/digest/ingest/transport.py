"""A lean HTTP/1.1 transport for httpx: asyncio streams and h11, keep-alive per host, and
connections only to the addresses the network policy allows (ingest.addresses)."""

from __future__ import annotations

import asyncio

# The resolver's thread encodes a name with this codec (socket.getaddrinfo): loaded here, not
# there, so no thread imports beside the database's thread of an early poll (ingest/early.py).
import encodings.idna  # noqa: F401
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence

import h11
import httpx

from digest.ingest.addresses import refusal
from digest.settingvalues import Network

KEEPALIVE_S = 30.0


class RefusedAddressError(httpx.TransportError):
    """Every address of the host is one the network policy refuses."""

    def __init__(self, host: str, address: str, why: str | None) -> None:
        where = address if address == host else f"{address} ({host})"
        super().__init__(
            f"refused to connect to {where}: {why}; feeds.allow_networks opens a range"
        )


async def allowed_addresses(host: str, port: int, allowed: Sequence[Network]) -> list[str]:
    """The host's addresses that the policy allows, resolved now: the caller connects to one of
    these, so a name cannot resolve to another address in between (DNS rebinding)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise httpx.ConnectError(f"cannot resolve {host}: {e.strerror}") from e
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    usable = [a for a in addresses if refusal(a, allowed) is None]
    if not usable:
        raise RefusedAddressError(host, addresses[0], refusal(addresses[0], allowed))
    return usable


class FeedTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with h11: keep-alive per host, no more.

    A poll makes thousands of small GETs, and httpx's default transport (httpcore over anyio)
    costs about 1.5 ms of CPU for each, on the one core the event loop has; this one costs
    a fifth of that. No HTTP/2 and no proxies (make_client keeps the default transport when
    the environment names one). Concurrency is the host slots' job (ingest.slots), not the pool's.
    Every connection goes to an address the policy allows (``allowed`` opens private ranges),
    checked after resolving, so each redirect hop is checked again.
    """

    def __init__(
        self,
        max_idle: int = 32,
        keepalive_expiry: float = KEEPALIVE_S,
        allowed: Sequence[Network] = (),
    ) -> None:
        self.allowed = tuple(allowed)
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
                addresses = await allowed_addresses(host, port, self.allowed)
                reader, writer = await _open_first(addresses, port, context, host)
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


async def _open_first(
    addresses: list[str], port: int, context: ssl.SSLContext | None, host: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the first of ``addresses`` that answers (TLS checked against ``host``)."""
    for address in addresses[:-1]:
        try:
            return await asyncio.open_connection(
                address, port, ssl=context, server_hostname=host if context else None
            )
        except OSError:
            continue
    return await asyncio.open_connection(
        addresses[-1], port, ssl=context, server_hostname=host if context else None
    )


class CheckedTransport(httpx.AsyncBaseTransport):
    """Another transport (httpx's own, which a proxy needs), after the same policy check of the
    host's addresses. Through a proxy the proxy connects: the check is on the addresses this
    machine resolves, the best digest can do there."""

    def __init__(self, inner: httpx.AsyncBaseTransport, allowed: Sequence[Network]) -> None:
        self.inner, self.allowed = inner, tuple(allowed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        await allowed_addresses(
            url.host, url.port or (443 if url.scheme == "https" else 80), self.allowed
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


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
