"""FeedTransport: HTTP/1.1 framing and keep-alive, against a raw asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest

from digest import __version__
from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.ingest.fetch import fetch_feed, make_client
from digest.settingvalues import parse_networks
from digest.types import FetchedFeed
from tests.conftest import LOOPBACK

UA = f"digest/{__version__} (+https://github.com/digest-dev/digest)"


def settings() -> FeedsSettings:
    return FeedsSettings(allow_networks=parse_networks(LOOPBACK))


def real_get(url: str) -> FetchedFeed:
    async def go() -> FetchedFeed:
        async with make_client(settings()) as client:
            return await fetch_feed(client, url, timeout=5, max_bytes=10**6, user_agent=UA)

    return asyncio.run(go())


class RawServer:
    """An HTTP/1.1 server of canned byte responses that counts its connections."""

    def __init__(
        self,
        responses: dict[str, bytes],
        close_after: set[str] | None = None,
        drop_request: int = 0,
    ) -> None:
        self.responses, self.close_after = responses, close_after or set()
        self.drop_request = drop_request  # hang up on this request of each connection (1, 2, ...)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                served += 1
                if served == self.drop_request:
                    break
                path = head.split(b" ", 2)[1].decode()
                writer.write(self.responses[path])
                await writer.drain()
                if path in self.close_after or b"Connection: close" in self.responses[path]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def raw_fetch(server: RawServer, paths: list[str]) -> list[FetchedFeed]:
    async def go() -> list[FetchedFeed]:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        got = []
        async with make_client(settings()) as client:
            for path in paths:
                got.append(
                    await fetch_feed(
                        client,
                        f"http://127.0.0.1:{port}{path}",
                        timeout=5,
                        max_bytes=10**6,
                        user_agent=UA,
                    )
                )
                await asyncio.sleep(0.05)  # lets a closing server's FIN arrive
        await asyncio.sleep(0.05)  # lets the handlers see the client hang up
        srv.close()
        return got

    return asyncio.run(go())


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_transport_keeps_one_connection_alive_for_a_host() -> None:
    server = RawServer({"/a": ok(b"<rss>a</rss>"), "/b": ok(b"<rss>b</rss>")})
    got = raw_fetch(server, ["/a", "/b", "/a"])
    assert [f.body for f in got] == [b"<rss>a</rss>", b"<rss>b</rss>", b"<rss>a</rss>"]
    assert server.connections == 1


def test_transport_reads_chunked_and_close_delimited_bodies() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<rss\r\n2\r\n/>\r\n0\r\n\r\n"
    )
    closed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<rss>closed</rss>"
    server = RawServer({"/chunked": chunked, "/closed": closed, "/after": ok(b"<rss/>")})
    got = raw_fetch(server, ["/chunked", "/closed", "/after"])
    assert [f.body for f in got] == [b"<rss/>", b"<rss>closed</rss>", b"<rss/>"]
    assert server.connections == 2  # the close-delimited body used its connection up


def test_transport_does_not_reuse_a_connection_the_server_closed() -> None:
    server = RawServer({"/a": ok(b"<rss/>")}, close_after={"/a"})
    got = raw_fetch(server, ["/a", "/a"])
    assert [f.status_code for f in got] == [200, 200]
    assert server.connections == 2


def test_transport_retries_once_when_a_kept_alive_connection_is_dropped() -> None:
    # The server hangs up as the second request arrives (its idle timeout, racing us).
    server = RawServer({"/a": ok(b"<rss/>")}, drop_request=2)
    got = raw_fetch(server, ["/a", "/a", "/a"])
    assert [f.status_code for f in got] == [200, 200, 200]
    assert server.connections == 3


def test_transport_a_fresh_connection_dropped_is_an_error() -> None:
    server = RawServer({"/a": ok(b"<rss/>")}, drop_request=1)
    with pytest.raises(FetchError, match="without a response"):
        raw_fetch(server, ["/a"])


def test_transport_304_leaves_the_connection_reusable() -> None:
    server = RawServer(
        {"/nm": b'HTTP/1.1 304 Not Modified\r\nETag: "1"\r\n\r\n', "/a": ok(b"<rss/>")}
    )
    got = raw_fetch(server, ["/nm", "/a", "/nm"])
    assert [f.status_code for f in got] == [304, 200, 304] and got[0].etag == '"1"'
    assert server.connections == 1


def test_transport_connection_refused_is_a_fetch_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="cannot connect"):
        real_get(f"http://127.0.0.1:{port}/feed")
