"""The web endpoint: one-click unsubscribe (RFC 8058), the web version of issues, the archive.

POST /unsubscribe/{token} acts at once and answers 200: no redirect, no cookie, nothing asked
of the client (RFC 8058 3.1). GET only shows a page with a button, because mail scanners
follow links. Endpoints are plain functions: Starlette runs them in its thread pool, so the
synchronous database calls don't block the event loop.
"""

from __future__ import annotations

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
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
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
        html = web_version(db, settings, number) if number > 0 else None
        if html is None:
            return page("not_found", 404)
        # The issue's own HTML: inline styles, remote images; no scripts, no forms.
        csp = "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:"
        return HTMLResponse(html, headers={**_HEADERS, "Content-Security-Policy": csp})

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
    return Starlette(routes=routes, exception_handlers={404: not_found})


def serve(db: Database, settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Serve make_app on web.host:web.port until stop is set (or SIGINT/SIGTERM in the main
    thread)."""
    import uvicorn

    sock = listen(settings.web.host, settings.web.port)
    config = uvicorn.Config(
        make_app(db, settings), log_level="warning", access_log=False, lifespan="off"
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
