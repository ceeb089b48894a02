"""Serving the web endpoint: uvicorn on a socket of ours, slow clients dropped, connections
bounded (in all, and per client address), stopped with the daemon or by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from digest.config import Settings
from digest.errors import ConfigError
from digest.storage import Database
from digest.web.app import make_app
from digest.web.limits import client_key
from digest.web.outbox import CLOSE_S

log = logging.getLogger(__name__)

# A request, headers and body, must be complete this long after its first byte (or the
# connection's start): a client that sends either a byte at a time (slowloris, or its slow-body
# cousin: 99 POSTs each one byte into a 1,000-byte body held every connection, so everyone
# else got 503) is dropped. Our largest body is a webhook's 300 KB, a form's 8 KB.
REQUEST_S = 5.0
# Connections at once; past this, uvicorn answers 503 (the daemon is no public web server).
MAX_CONNECTIONS = 100
# Connections at once from one client address (an IPv6 /64 counts as one); more are closed
# as they open. 120 sockets from one address that reconnected as soon as they were dropped
# kept the endpoint at 503 for 38-40 of 41 probes; a browser opens at most 6.
PER_CLIENT = 10
# The reverse proxy's addresses (uvicorn trusts their X-Forwarded-For): not capped per
# client, since every reader comes through them (the proxy limits its clients).
PROXIES_ENV = "FORWARDED_ALLOW_IPS"
DEFAULT_PROXIES = "127.0.0.1,::1"
# uvicorn's shutdown waits this long for requests in flight; then the outbox gets its turn.
GRACEFUL_S = 2


def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Serve make_app on web.host:web.port until stop is set (or SIGINT/SIGTERM in the main
    thread)."""
    run(*_opened(db, settings), stop)


def serve_until_signalled(db: Database, settings: Settings) -> None:
    """`digest serve`: serve until SIGTERM or SIGINT, then stop as `digest run` does: requests
    in flight finish, queued emails go (or are kept for the next start), a "stopped" line,
    exit 0. A port it can't take, or settings it refuses, raise ConfigError at once."""
    stop = threading.Event()
    with _stop_on_signals(stop):
        sock, app = _opened(db, settings)
        failed: list[BaseException] = []

        def target() -> None:
            try:
                run(sock, app, stop)
            except BaseException as e:  # noqa: BLE001 - uvicorn exits with SystemExit
                failed.append(e)

        thread = threading.Thread(target=target, name="digest-web")
        thread.start()
        while thread.is_alive() and not stop.wait(0.5):
            pass
        log.info("stopping: requests in flight get %d s, queued emails %.0f s", GRACEFUL_S, CLOSE_S)
        thread.join()
    if failed:
        raise failed[0]
    log.info("stopped", extra={"fields": {"event": "stop"}})


def _opened(db: Database, settings: Settings) -> tuple[socket.socket, Any]:
    """The listening socket and the app (ConfigError for a port taken, settings refused)."""
    sock = listen(settings.web.host, settings.web.port)
    try:
        return sock, make_app(db, settings)
    except BaseException:
        sock.close()
        raise


def run(sock: socket.socket, app: Any, stop: threading.Event | None) -> None:
    """uvicorn on ``sock`` until ``stop`` is set; then the app's outbox is closed."""
    import uvicorn

    proxies = os.environ.get(PROXIES_ENV, DEFAULT_PROXIES)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=_protocol(_networks(proxies)),
        limit_concurrency=MAX_CONNECTIONS,
        forwarded_allow_ips=proxies,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    server = uvicorn.Server(config)
    if stop is not None:

        def watch() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="digest-web-stop", daemon=True).start()
    host, port = sock.getsockname()[:2]
    log.info("web endpoint on http://%s:%s", host, port)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        app.state.site.close()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        log.info("%s: already stopping" if stop.is_set() else "%s received", name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """FORWARDED_ALLOW_IPS's addresses and networks ("*" and names: none, for the cap)."""
    found = []
    for part in text.split(","):
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_network(part.strip(), strict=False))
    return tuple(found)


def _protocol(proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> type:
    """uvicorn's h11 protocol with a deadline for each request's headers and body, and at most
    PER_CLIENT connections from one client address (the proxies' excepted)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    open_from: dict[str, int] = {}  # client key -> connections; one event loop: no lock
    refused_at: dict[str, float] = {}  # client key -> when its last refusal was logged

    def is_proxy(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in proxies)

    class RequestDeadline(H11Protocol):
        deadline: asyncio.TimerHandle | None = None
        counted: str | None = None  # the client key this connection counts for
        refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if peer else ""
            if not is_proxy(host):
                key = client_key(host)
                if open_from.get(key, 0) >= PER_CLIENT:
                    # Closed before uvicorn counts it: 100 of these accepted in one go would
                    # otherwise fill uvicorn's limit_concurrency until they are gone.
                    self.refused = True
                    self._say_refused(key)
                    transport.abort()
                    return
                open_from[key] = open_from.get(key, 0) + 1
                self.counted = key
            # asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and a socket
            # accepted from socket.create_server's says 0: every answer (headers, then body)
            # then waited for the client's delayed ACK, 44 ms a request instead of 0.4 ms.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)
            self.deadline = self.loop.call_later(REQUEST_S, self._too_slow)

        def _say_refused(self, key: str) -> None:
            now = time.monotonic()
            if now - refused_at.get(key, -60.0) >= 60.0:  # a line a minute per client
                refused_at[key] = now
                log.warning("%s holds %d connections: closing its new ones", key, PER_CLIENT)

        def data_received(self, data: bytes) -> None:
            if self.deadline is None and self._between_requests():
                self.deadline = self.loop.call_later(REQUEST_S, self._too_slow)
            super().data_received(data)
            if self.deadline is not None and not self._receiving():
                self.deadline.cancel()
                self.deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.refused:
                return  # never made, as far as uvicorn knows
            if self.deadline is not None:
                self.deadline.cancel()
            if self.counted is not None:
                left = open_from.pop(self.counted, 1) - 1
                if left:
                    open_from[self.counted] = left
                self.counted = None
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _receiving(self) -> bool:
            """A request is on its way: its headers, or its body, not yet all here."""
            return self._between_requests() or bool(self.cycle and self.cycle.more_body)

        def _too_slow(self) -> None:
            self.deadline = None
            if self._receiving() and not self.transport.is_closing():
                log.info("dropped a connection whose request took over %.0f s", REQUEST_S)
                self.transport.close()

    return RequestDeadline


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so a taken port is one clear error rather than uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as e:
        raise ConfigError(f"web.host/web.port: cannot listen on {host}:{port}: {e.strerror}") from e
