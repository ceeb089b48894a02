"""What every page of the web endpoint shares: the database, the settings, the templates, and
the headers that keep tokens and pages to themselves.

Endpoints are plain functions: Starlette runs them in its thread pool, so the synchronous
database calls don't block the event loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.responses import HTMLResponse

from digest import __version__
from digest.config import Settings
from digest.delivery.tokens import signing_key
from digest.errors import DigestError
from digest.feedlist.opml import read_opml
from digest.issue.plan import latest_issue
from digest.issue.render import date_range
from digest.issue.sendtimes import SendWords, when_issues_come
from digest.storage import Database, utcnow
from digest.types import SECTION_ORDER, SECTION_TITLES, FeedSource, section_for
from digest.web.conditional import Conditional
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
    # /feed.xml (one document, ~2 MB) and the archive's pages (~12 KB each), answered by key.
    feed_answers: Conditional = field(default_factory=lambda: Conditional("", 1))
    archive_answers: Conditional = field(default_factory=lambda: Conditional("", 8))

    blog_list: BlogList | None = None

    @classmethod
    def open(cls, db: Database, settings: Settings) -> Site:
        from digest.issue.render import environment

        env = environment(settings.newsletter.templates)
        env.filters["dates"] = lambda issue: date_range(
            issue.window_start, issue.window_end, ZoneInfo(settings.newsletter.timezone)
        )
        key = signing_key(db, settings)
        site = cls(db, settings, key, env, Outbox(db, settings, key))
        site.signups = SlidingLimit(settings.web.signup_rate)
        site.feed_answers = Conditional(fingerprint(settings), 1)
        site.archive_answers = Conditional(fingerprint(settings), 8)
        site.blog_list = BlogList(settings.feeds.opml)
        site.say_how_signup_stands()
        site.outbox.resume()
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

    def url(self, path: str) -> str:
        """An absolute URL of ours, from newsletter.base_url (never from the Host header)."""
        return self.settings.newsletter.base_url.rstrip("/") + path

    def about(self) -> dict[str, Any]:
        """What the sign-up pages say of the newsletter: what it is, when issues come, the
        latest one (None before the first)."""
        return {
            "description": self.settings.newsletter.description,
            "when": self.when(),
            "latest": latest_issue(self.db),
        }

    def when(self) -> SendWords:
        """When issues come, from now."""
        newsletter = self.settings.newsletter
        return when_issues_come(newsletter.send_at, newsletter.timezone, utcnow())

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


def fingerprint(settings: Settings) -> str:
    """What the archive and the feed carry besides the issues: a change of any (base_url
    above all: every link) changes their ETags, across a restart too."""
    nl = settings.newsletter
    shaped_by = (__version__, nl.base_url, nl.title, nl.description, nl.timezone,
                 settings.signup_enabled, settings.web.feed_issues)  # fmt: skip
    return repr(shaped_by)


def signup_status(settings: Settings) -> str:
    """Whether the sign-up form is open, and why, in one line (the log, `digest serve`)."""
    web, base_url = settings.web, settings.newsletter.base_url
    if not settings.signup_enabled:
        why = "web.signup = false" if web.signup is False else f"{base_url} is not https"
        return f"sign-up form off ({why}; set web.signup = true to open it)"
    why = "web.signup = true" if web.signup else f"{base_url} is https"
    return f"sign-up form on at {base_url}/subscribe ({why})"


@dataclass
class BlogList:
    """The blogs of the feed list (feeds.opml) by section, for the sign-up page: read again
    when the file changes; none when it can't be read (a web-only host may have no copy)."""

    path: Path
    _read: tuple[int, list[tuple[str, list[FeedSource]]]] | None = None

    def by_section(self) -> list[tuple[str, list[FeedSource]]]:
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            return []
        if self._read is None or self._read[0] != stamp:
            try:
                sources = read_opml(self.path)
            except DigestError as e:
                log.info("the sign-up page lists no blogs: %s", e)
                return []
            self._read = (stamp, _grouped(sources))
        return self._read[1]


def _grouped(sources: list[FeedSource]) -> list[tuple[str, list[FeedSource]]]:
    """(section title, its blogs by name) in issue order; one entry per site."""
    found: dict[str, dict[str, FeedSource]] = {}
    for source in sources:
        site = source.site_url or source.url
        found.setdefault(section_for(source.category), {}).setdefault(site, source)
    return [
        (SECTION_TITLES[key], sorted(found[key].values(), key=lambda f: (f.title or "").casefold()))
        for key in SECTION_ORDER
        if key in found
    ]
