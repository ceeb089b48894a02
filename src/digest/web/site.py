"""What every page of the web endpoint shares: the database, the settings, the templates, and
the headers that keep tokens and pages to themselves.

Endpoints are plain functions: Starlette runs them in its thread pool, so the synchronous
database calls don't block the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

from digest.config import Settings
from digest.delivery.tokens import signing_key
from digest.storage import Database
from digest.web.limits import SlidingLimit
from digest.web.outbox import Outbox

log = logging.getLogger(__name__)

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
    """One database, its settings, the key that signs tokens and the page templates; the
    outbox of confirmation emails and the sign-up limit per client."""

    db: Database
    settings: Settings
    key: str
    env: jinja2.Environment
    outbox: Outbox
    signups: SlidingLimit = field(default_factory=lambda: SlidingLimit(1))

    @classmethod
    def open(cls, db: Database, settings: Settings) -> Site:
        from digest.issue.render import environment

        env = environment(settings.newsletter.templates)
        env.filters["local"] = _local_date
        key = signing_key(db, settings)
        site = cls(db, settings, key, env, Outbox(db, settings, key))
        site.signups = SlidingLimit(settings.web.signup_rate)
        site.say_how_signup_stands()
        return site

    @property
    def signup(self) -> bool:
        return self.settings.signup_enabled

    def say_how_signup_stands(self) -> None:
        """One log line on the sign-up form: on or off and why; and, when on with no SMTP
        server, that confirmation emails can't go (said in the log only, on no page)."""
        log.info("%s", signup_status(self.settings))
        if self.signup and not self.settings.sending_enabled:
            log.warning(
                "sign-up is on but smtp.host is empty: no confirmation email can be sent, so "
                "sign-ups stay pending (and are deleted after a week)"
            )

    def close(self) -> None:
        self.outbox.close()

    def page(
        self, name: str, status: int = 200, /, *, private: bool = False, **context: Any
    ) -> HTMLResponse:
        """templates/web/NAME.html.j2 as a response, with the headers every page has."""
        template = self.env.get_template(f"web/{name}.html.j2")
        html = template.render(title=self.settings.newsletter.title, **context)
        headers = {**HEADERS, "Content-Security-Policy": PAGE_CSP}
        if private:
            headers.update(PRIVATE)
        return HTMLResponse(html, status_code=status, headers=headers)


def signup_status(settings: Settings) -> str:
    """Whether the sign-up form is open, and why, in one line (the log, `digest serve`)."""
    web, base_url = settings.web, settings.newsletter.base_url
    if not settings.signup_enabled:
        why = "web.signup = false" if web.signup is False else f"{base_url} is not https"
        return f"sign-up form off ({why}; set web.signup = true to open it)"
    why = "web.signup = true" if web.signup else f"{base_url} is https"
    return f"sign-up form on at {base_url}/subscribe ({why})"


def _local_date(value: Any, zone: str) -> str:
    return str(value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d"))
