"""The Starlette application: each concern's routes (reading.py, signup.py, preferences.py,
feed.py) on one Site, the 404 page, and the headers every response carries."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from digest.config import Settings
from digest.storage import Database
from digest.web import feed, preferences, reading, signup, webhooks
from digest.web.site import Site

# On every response, 404s and errors included: no page of ours in another site's frame.
_FRAMING = [(b"x-frame-options", b"DENY")]


def make_app(db: Database, settings: Settings) -> Starlette:
    """The Starlette application for one database and its settings."""
    site = Site.open(db, settings)

    def not_found(request: Request, exc: Exception) -> Response:
        return site.page("not_found", 404)

    routes = [
        *reading.routes(site),
        *signup.routes(site),
        *preferences.routes(site),
        *feed.routes(site),
        *webhooks.routes(site),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.state.site = site  # serve() closes its outbox when the server stops
    app.add_middleware(_NoFraming)
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
