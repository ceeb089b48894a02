"""The web endpoint: one-click unsubscribe (RFC 8058), the web version of issues, the archive.

POST /unsubscribe/{token} acts at once and answers 200: no redirect, no cookie, nothing asked
of the client (RFC 8058 3.1). GET only shows a page with a button, because mail scanners
follow links. Endpoints are plain functions: Starlette runs them in its thread pool, so the
synchronous database calls don't block the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.config import Settings
from digest.delivery.subscribers import secret, subscriber_for_token, unsubscribe
from digest.errors import ConfigError
from digest.storage import Database
from digest.types import SubscriberStatus

log = logging.getLogger(__name__)

_HEADERS = {
    # The token is in the URL: never let it leak to another site in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# On every response: no page of ours in another site's frame (clickjacking of the buttons).
_FRAMING = [(b"x-frame-options", b"DENY")]
_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
_ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'none'"
)
# Issue numbers are stored as 32-bit integers; a larger one is no issue (404), not a 500.
MAX_NUMBER = 2**31 - 1
# A request's headers must be complete this long after its first byte (or the connection's
# start): a client that sends them a byte at a time (slowloris) is dropped.
HEADERS_S = 5.0
# Connections at once; past this, uvicorn answers 503 (the daemon is no public web server).
MAX_CONNECTIONS = 100
_PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


def make_app(db: Database, settings: Settings) -> Starlette:
    """The Starlette application for one database and its settings."""
    env = _environment(settings)
    key = secret(db, settings)
    title = settings.newsletter.title

    def page(name: str, status: int = 200, private: bool = False, **context: Any) -> HTMLResponse:
        html = env.get_template(f"web/{name}.html.j2").render(title=title, **context)
        headers = {**_HEADERS, "Content-Security-Policy": _PAGE_CSP}
        if private:
            headers.update(_PRIVATE)
        return HTMLResponse(html, status_code=status, headers=headers)

    def unsubscribe_endpoint(request: Request) -> Response:
        token = request.path_params["token"]
        subscriber = subscriber_for_token(db, key, token)
        if subscriber is None:
            return page("bad_token", 400, private=True)
        if request.method == "POST":
            if unsubscribe(db, subscriber.id):
                log.info("unsubscribed subscriber %d", subscriber.id)
            return page("unsubscribed", private=True, email=subscriber.email)
        return page(
            "unsubscribe",
            private=True,
            email=subscriber.email,
            already=subscriber.status == SubscriberStatus.UNSUBSCRIBED,
        )

    def issue_endpoint(request: Request) -> Response:
        from digest.issue.plan import web_version

        try:
            number = int(request.path_params["number"])
        except ValueError:
            number = -1
        html = web_version(db, settings, number) if 0 < number <= MAX_NUMBER else None
        if html is None:
            return page("not_found", 404)
        # The issue's own HTML: inline styles, remote images; no scripts, no forms.
        return HTMLResponse(html, headers={**_HEADERS, "Content-Security-Policy": _ISSUE_CSP})

    def archive_endpoint(request: Request) -> Response:
        from digest.issue.plan import list_issues

        return page("archive", issues=list_issues(db), zone=settings.newsletter.timezone)

    def not_found(request: Request, exc: Exception) -> Response:
        return page("not_found", 404)

    routes = [
        Route("/", archive_endpoint, methods=["GET"]),
        Route("/issues/{number}", issue_endpoint, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_endpoint, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.add_middleware(_NoFraming)
    return app


class _NoFraming:
    """ASGI middleware: X-Frame-Options: DENY on every response, errors and 404s included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def framed(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_FRAMING]
            await send(message)

        await self.app(scope, receive, framed)


def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Serve make_app on web.host:web.port until stop is set (or SIGINT/SIGTERM in the main
    thread)."""
    import uvicorn

    sock = listen(settings.web.host, settings.web.port)
    config = uvicorn.Config(
        make_app(db, settings),
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


def _protocol() -> type:
    """uvicorn's h11 protocol with a deadline for each request's headers."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.deadline = self.loop.call_later(HEADERS_S, self._too_slow)

        def data_received(self, data: bytes) -> None:
            if self.deadline is None and self._between_requests():
                self.deadline = self.loop.call_later(HEADERS_S, self._too_slow)
            super().data_received(data)
            if self.deadline is not None and not self._between_requests():
                self.deadline.cancel()
                self.deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _too_slow(self) -> None:
            self.deadline = None
            if self._between_requests() and not self.transport.is_closing():
                log.info("dropped a connection whose request took over %.0f s", HEADERS_S)
                self.transport.close()

    return HeaderDeadline


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so a taken port is one clear error rather than uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as e:
        raise ConfigError(f"web.host/web.port: cannot listen on {host}:{port}: {e.strerror}") from e


def _environment(settings: Settings) -> jinja2.Environment:
    from digest.issue.render import environment

    env = environment(settings.newsletter.templates)
    env.filters["local"] = _local_date
    return env


def _local_date(value: Any, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return str(value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d"))
