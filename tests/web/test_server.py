"""web/server.py's request deadline against the uvicorn installed: it subclasses uvicorn's
H11Protocol and reads ``self.loop``, ``self.transport``, ``self.cycle`` and the cycle's
``response_complete`` and ``more_body``, none of them uvicorn's public API. pyproject pins the
uvicorn versions this passed on; this test fails as soon as one of those internals changes
(an AttributeError inside data_received drops every connection), in a second, in process.
test_web.py::test_slow_clients_are_dropped_and_the_others_served is the end-to-end check with
the real 5 s deadline and 80 slow clients."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from digest.config import Settings
from digest.storage import Database
from digest.web import serve
from digest.web import server as server_module
from tests.conftest import free_port, wait_for

DEADLINE_S = 0.5


@pytest.fixture
def base(sqlite_db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`serve` in a thread, its request deadline cut to half a second."""
    monkeypatch.setattr(server_module, "REQUEST_S", DEADLINE_S)
    port = free_port()
    settings = Settings().replace(web={"host": "127.0.0.1", "port": port})
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(sqlite_db, settings), kwargs={"stop": stop})
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(url + "/", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, 30, what="serve to answer")
        yield url
    finally:
        stop.set()
        thread.join(10)


def closed_by_the_server(s: socket.socket) -> bool:
    """Does the server close this connection (within 10 s: 20 deadlines)?"""
    s.settimeout(10)
    try:
        return s.recv(1024) == b""
    except TimeoutError:
        return False


def test_uvicorns_protocol_still_has_what_the_deadline_reads() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    for method in ("connection_made", "data_received", "connection_lost"):
        assert callable(getattr(H11Protocol, method, None)), method
    assert issubclass(server_module._protocol(()), H11Protocol)


def test_headers_or_a_body_that_never_end_are_dropped(base: str) -> None:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as headers:
        headers.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert closed_by_the_server(headers)
    with socket.create_connection(("127.0.0.1", port)) as body:
        body.sendall(
            b"POST /preferences/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\na"
        )
        assert closed_by_the_server(body)


def test_whole_requests_on_a_kept_alive_connection_are_served(base: str) -> None:
    # The deadline ends with each request (the cycle's response_complete) and starts again
    # with the next one's first byte: three requests in turn on one connection, a body too.
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(3):
            assert client.get("/").status_code == 200
            posted = client.post("/unsubscribe/1.AAAAAAAAAAAAAAAAAAAAAA", content=b"x" * 5000)
            assert posted.status_code in (400, 404)
        assert client.get("/").status_code == 200
