"""Serving the web endpoint: uvicorn on a socket of ours, slow clients dropped, connections
bounded, stopped with the daemon."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from digest.config import Settings
from digest.errors import ConfigError
from digest.storage import Database
from digest.web.app import make_app

log = logging.getLogger(__name__)

# A request, headers and body, must be complete this long after its first byte (or the
# connection's start): a client that sends either a byte at a time (slowloris, or its slow-body
# cousin: 99 POSTs each one byte into a 1,000-byte body held every connection, so everyone
# else got 503) is dropped. Our largest body is a webhook's 300 KB, a form's 8 KB.
REQUEST_S = 5.0
# Connections at once; past this, uvicorn answers 503 (the daemon is no public web server).
MAX_CONNECTIONS = 100


def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Serve make_app on web.host:web.port until stop is set (or SIGINT/SIGTERM in the main
    thread)."""
    import uvicorn

    sock = listen(settings.web.host, settings.web.port)
    app = make_app(db, settings)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=_protocol(),
        limit_concurrency=MAX_CONNECTIONS,
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


def _protocol() -> type:
    """uvicorn's h11 protocol with a deadline for each request's headers and body."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class RequestDeadline(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.deadline = self.loop.call_later(REQUEST_S, self._too_slow)

        def data_received(self, data: bytes) -> None:
            if self.deadline is None and self._between_requests():
                self.deadline = self.loop.call_later(REQUEST_S, self._too_slow)
            super().data_received(data)
            if self.deadline is not None and not self._receiving():
                self.deadline.cancel()
                self.deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
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
