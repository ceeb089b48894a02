"""Real servers on 127.0.0.1 for tests: a scriptable HTTP server, an aiosmtpd sink and a TCP
forwarder that can cut a database off."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd import smtp as aiosmtp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

SHUTDOWN_POLL_S = 0.01


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0  # seconds between the body's bytes, sent one at a time


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[Request], Response]


class Gate:
    """``hold_after(n)``: let ``n`` more through, then hold everyone (a request, a message)
    until ``release()``; ``held`` is set once one is held. Who is held calls ``wait_turn``."""

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()
        self._released = threading.Event()
        self._released.set()
        self._let_through: int | None = None  # how many more pass; None: no hold
        self._gate_lock = threading.Lock()

    def hold_after(self, n: int) -> None:
        with self._gate_lock:
            self._let_through = n
            self._released.clear()
            self.held.clear()

    def release(self) -> None:
        with self._gate_lock:
            self._let_through = None
            self._released.set()

    def must_hold(self) -> bool:
        """Count one through the gate: True when it must wait (see wait_turn)."""
        with self._gate_lock:
            if self._let_through is None:
                return False
            if self._let_through > 0:
                self._let_through -= 1
                return False
        self.held.set()
        return True

    def wait_turn(self) -> None:
        self._released.wait()


class FeedServer(Gate):
    """Routes paths to canned or computed responses and records every request.

    ``hold_after(n)`` answers ``n`` more requests, then holds every request (recorded, not
    answered) until ``release()``: a poll caught part-way, for as long as the test needs;
    ``held`` is set once one is held. A Response's ``delay`` or ``drip`` is latency (a slow
    server, for timeouts), never a way to be still running when a test looks.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.host = host
        self.routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        server = self
        self.in_flight = 0
        self.max_in_flight = 0

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self)

            def do_HEAD(self) -> None:
                server._serve(self)

        self.httpd = ThreadingHTTPServer((host, 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # serve_forever looks for shutdown() every poll_interval: at the default 0.5 s, every
        # test that closes a server waited up to half a second for it.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, response: Response | Handler) -> None:
        if callable(response):
            self.routes[path] = response
            return

        def canned(_req: Request) -> Response:
            return response

        self.routes[path] = canned

    def hits(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        req = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()})
        with self.lock:
            self.requests.append(req)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.must_hold():
                self.wait_turn()
            handler = self.routes.get(h.path) or self.routes.get(h.path.split("?")[0])
            resp = handler(req) if handler else Response(404, b"not found")
            if resp.delay:
                time.sleep(resp.delay)
            body = resp.body
            headers = dict(resp.headers)
            if headers.pop("X-Gzip", None) and "gzip" in req.headers.get("accept-encoding", ""):
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            h.send_response(resp.status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if h.command != "HEAD" and resp.drip:
                for at in range(len(body)):
                    h.wfile.write(body[at : at + 1])
                    h.wfile.flush()
                    time.sleep(resp.drip)
            elif h.command != "HEAD":
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Sink:
    """aiosmtpd handler: stores messages; a script of replies can fail some of them."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []
        self.replies: list[str] = []  # consumed one per DATA: e.g. "451 try later"
        self.reject: dict[str, str] = {}  # recipient -> reply at RCPT
        self.lock = threading.Lock()

    async def handle_RCPT(  # noqa: N802
        self, server: aiosmtp.SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.lower() in self.reject:
            return self.reject[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: aiosmtp.SMTP, session: Session, envelope: Envelope
    ) -> str:
        with self.lock:
            if self.replies:
                return self.replies.pop(0)
            self.messages.append((envelope, bytes(envelope.original_content or b"")))
        return "250 Message accepted"


class PortZeroController(Controller):
    """aiosmtpd's Controller, able to listen on port 0 (its readiness probe dials self.port)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SMTPSink:
    """A real SMTP server on 127.0.0.1 that keeps what it receives."""

    handler: _Sink

    def __init__(self) -> None:
        self.handler = _Sink()
        self.controller = PortZeroController(self.handler, hostname="127.0.0.1", port=0)
        self.controller.start()
        self.port = self.controller.port

    @property
    def messages(self) -> list[Message]:
        with self.handler.lock:
            return [message_from_bytes(raw) for _env, raw in self.handler.messages]

    @property
    def raw(self) -> list[bytes]:
        with self.handler.lock:
            return [raw for _env, raw in self.handler.messages]

    def recipients(self) -> list[str]:
        with self.handler.lock:
            return [r for env, _raw in self.handler.messages for r in env.rcpt_tos]

    def close(self) -> None:
        self.controller.stop()


class Forwarder:
    """A TCP forwarder on 127.0.0.1 to ``target``: what a database server behind a network
    looks like. stop() refuses new connections and cuts the open ones (the server "goes
    away"); start() listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        assert self.listener is not None
        # close() alone leaves a thread blocked in accept() listening (Linux): shut it first.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:  # closed by stop()
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
