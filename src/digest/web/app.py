"""The Starlette application: each concern's routes (reading.py, signup.py, preferences.py,
feed.py, webhooks.py, health.py) on one Site, the 404 page, the headers every response
carries, and a line in the log for each request."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match

from digest.config import Settings
from digest.storage import Database
from digest.web import feed, health, preferences, reading, signup, webhooks
from digest.web.site import HEADERS, Site

access_log = logging.getLogger("digest.web.access")

# On every response, 404s and errors included: no page of ours in another site's frame.
_FRAMING_STR = [("X-Frame-Options", "DENY")]
_FRAMING = [(name.lower().encode(), value.encode()) for name, value in _FRAMING_STR]


def make_app(db: Database, settings: Settings) -> Starlette:
    """The Starlette application for one database and its settings."""
    site = Site.open(db, settings)

    def not_found(request: Request, exc: Exception) -> Response:
        moved = _without_slash(app, request)
        if moved is not None:
            return RedirectResponse(site.url(moved), 307, headers=HEADERS)
        return site.page("not_found", 404)

    def server_error(request: Request, exc: Exception) -> Response:
        # What the client sees when a bug escapes (uvicorn logs the traceback): our page and
        # our headers, not Starlette's bare text.
        response = site.page("error", 500)
        response.headers.update(dict(_FRAMING_STR))
        return response

    routes = [
        *reading.routes(site),
        *signup.routes(site),
        *preferences.routes(site),
        *feed.routes(site),
        *webhooks.routes(site),
        *health.routes(site),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 500: server_error})
    # Starlette's own redirect of "/subscribe/" to "/subscribe" is built from the Host header
    # (a link to any host we answer for); not_found() builds it from newsletter.base_url.
    app.router.redirect_slashes = False
    app.state.site = site  # serve() closes its outbox when the server stops
    app.add_middleware(_NoFraming)
    app.add_middleware(_ReadOnlyRequests)
    app.add_middleware(_AccessLog)
    return app


class _NoFraming:
    """ASGI middleware: X-Frame-Options: DENY on every response."""

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


class _ReadOnlyRequests:
    """ASGI middleware: a GET or HEAD only reads (pages, /feed.xml, /healthz, /metrics): its
    SQLite transactions take no write lock (storage.Database.read_only), so a page is served
    beside a poll's writes, and a GET that wrote would fail loudly in the tests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        with Database.read_only():
            await self.app(scope, receive, send)


class _AccessLog:
    """ASGI middleware: one line per request in the daemon's log format (text, or JSON with
    --log-format json), tokens cut out of the path: an unsubscribe or confirm link is as good
    as the reader's password to their subscription."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # what the client sees when the app fails before answering

        async def noted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            _log_request(scope, status, (time.monotonic() - started) * 1000)


def _without_slash(app: Starlette, request: Request) -> str | None:
    """The path without its trailing slash when that is one of our routes, else None."""
    path = request.url.path
    if path == "/" or not path.endswith("/"):
        return None
    stripped = path.rstrip("/")
    scope = {**request.scope, "path": stripped}
    if not any(route.matches(scope)[0] != Match.NONE for route in app.router.routes):
        return None
    query = request.url.query
    return stripped + (f"?{query}" if query else "")


def _log_request(scope: Any, status: int, ms: float) -> None:
    path = redact(scope.get("path", ""))
    client = str((scope.get("client") or ("-",))[0])
    method = str(scope["method"])
    fields = {"event": "http", "method": method, "path": path, "status": status,
              "ms": round(ms, 1), "client": client}  # fmt: skip
    # The text line shows what came in, escaped: a path's "%0a" (uvicorn decodes it) would
    # start a forged line, and escape sequences would drive the terminal reading the log.
    access_log.info(
        "%s %s %s %s %.1f ms",
        printable(client),
        printable(method),
        printable(path),
        status,
        ms,
        extra={"fields": fields},
    )


def printable(text: str) -> str:
    """``text`` with backslashes, line breaks, control and other unprintable characters
    written as Python escapes (\\n, \\x1b, \\u2028): one line, nothing a terminal acts on."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


# The routes whose last segment is a reader's token: never logged, whatever its shape.
_TOKEN_ROUTES = ("unsubscribe", "preferences", "confirm")
# Elsewhere, a segment that looks like one of our tokens (an id, a dot and a MAC; or any long
# run of URL-safe characters) is cut too: a mistyped link still holds a real token.
_TOKENISH = re.compile(r"^(?:\d+\.[\w.-]{8,}|[\w.~-]{24,})$")


def redact(path: str) -> str:
    """``/unsubscribe/12.Xy…`` as ``/unsubscribe/…``; every other segment as it is."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if _TOKENISH.match(part) or (i == 2 and parts[1] in _TOKEN_ROUTES and part):
            parts[i] = "…"
    return "/".join(parts)
