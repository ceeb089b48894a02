"""The pages a reader reaches from an issue: its web version, the archive (linking the sign-up
form and the Atom feed), and one-click unsubscribe (RFC 8058).

POST /unsubscribe/{token} acts at once and answers 200: no redirect, no cookie, nothing asked
of the client (RFC 8058 3.1). GET only shows a page with a button, because mail scanners
follow links.
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.delivery.subscribers import subscriber_for_token, unsubscribe
from digest.issue.plan import list_issues, web_version
from digest.types import SubscriberStatus
from digest.web.site import HEADERS, Site

log = logging.getLogger(__name__)

# The issue's own HTML: inline styles, remote images; no scripts, no forms, no framing.
ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'none'"
)
# Issue numbers are stored as 32-bit integers; a larger one is no issue (404), not a 500.
MAX_NUMBER = 2**31 - 1
# The web version gets a bar above the issue: the archive, the feed, the sign-up form (the
# stored HTML is the email's, which can't know whether the form is open today).
_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)
_BAR = (
    '<div style="padding:10px 16px;background:#222222;font:14px/1.5 Helvetica,Arial,'
    'sans-serif;text-align:center"><a href="/" style="color:#ffffff">All issues</a>'
    '{signup} · <a href="/feed.xml" style="color:#ffffff">Feed</a></div>'
)


def _bar(site: Site) -> str:
    signup = ' · <a href="/subscribe" style="color:#ffffff">Subscribe</a>' if site.signup else ""
    return _BAR.format(signup=signup)


def routes(site: Site) -> list[Route]:
    def unsubscribe_endpoint(request: Request) -> Response:
        subscriber = subscriber_for_token(site.db, site.key, request.path_params["token"])
        if subscriber is None:
            return site.page("bad_token", 400, private=True)
        if request.method == "POST":
            ip = request.client.host if request.client else None
            if unsubscribe(site.db, subscriber.id, ip=ip):
                log.info("unsubscribed subscriber %d", subscriber.id)
            return site.page("unsubscribed", private=True, email=subscriber.email)
        already = subscriber.status == SubscriberStatus.UNSUBSCRIBED
        return site.page("unsubscribe", private=True, email=subscriber.email, already=already)

    def issue_endpoint(request: Request) -> Response:
        try:
            number = int(request.path_params["number"])
        except ValueError:
            number = -1
        html = web_version(site.db, site.settings, number) if 0 < number <= MAX_NUMBER else None
        if html is None:
            return site.page("not_found", 404)
        html = _BODY.sub(lambda m: m.group(0) + _bar(site), html, count=1)
        return HTMLResponse(html, headers={**HEADERS, "Content-Security-Policy": ISSUE_CSP})

    def archive_endpoint(request: Request) -> Response:
        zone = site.settings.newsletter.timezone
        issues = list_issues(site.db)
        return site.page("archive", issues=issues, zone=zone, signup=site.signup)

    return [
        Route("/", archive_endpoint, methods=["GET"]),
        Route("/issues/{number}", issue_endpoint, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_endpoint, methods=["GET", "POST"]),
    ]
