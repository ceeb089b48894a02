"""What every page of the web endpoint shares: the database, the settings, the templates, and
the headers that keep tokens and pages to themselves.

Endpoints are plain functions: Starlette runs them in its thread pool, so the synchronous
database calls don't block the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

from digest.config import Settings
from digest.delivery.subscribers import secret
from digest.storage import Database

HEADERS = {
    # Tokens are in URLs: never let one leak to another site in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# Pages of ours: their own styles and forms only, in no other site's frame (clickjacking).
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
)
# Pages with a person's token or address: never cached, never indexed.
PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}


@dataclass
class Site:
    """One database, its settings, the key that signs tokens and the page templates."""

    db: Database
    settings: Settings
    key: str
    env: jinja2.Environment

    @classmethod
    def open(cls, db: Database, settings: Settings) -> Site:
        from digest.issue.render import environment

        env = environment(settings.newsletter.templates)
        env.filters["local"] = _local_date
        return cls(db, settings, secret(db, settings), env)

    def page(
        self, name: str, status: int = 200, *, private: bool = False, **context: Any
    ) -> HTMLResponse:
        """templates/web/NAME.html.j2 as a response, with the headers every page has."""
        template = self.env.get_template(f"web/{name}.html.j2")
        html = template.render(title=self.settings.newsletter.title, **context)
        headers = {**HEADERS, "Content-Security-Policy": PAGE_CSP}
        if private:
            headers.update(PRIVATE)
        return HTMLResponse(html, status_code=status, headers=headers)


def _local_date(value: Any, zone: str) -> str:
    return str(value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d"))
