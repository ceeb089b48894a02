"""The pages a reader reaches from an issue: its web version, the archive, and one-click
unsubscribe (RFC 8058).

POST /unsubscribe/{token} acts at once and answers 200: no redirect, no cookie, nothing asked
of the client (RFC 8058 3.1). GET only shows a page with a button, because mail scanners
follow links.
"""

from __future__ import annotations

import logging

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


def routes(site: Site) -> list[Route]:
    def unsubscribe_endpoint(request: Request) -> Response:
        subscriber = subscriber_for_token(site.db, site.key, request.path_params["token"])
        if subscriber is None:
            return site.page("bad_token", 400, private=True)
        if request.method == "POST":
            if unsubscribe(site.db, subscriber.id):
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
        return HTMLResponse(html, headers={**HEADERS, "Content-Security-Policy": ISSUE_CSP})

    def archive_endpoint(request: Request) -> Response:
        zone = site.settings.newsletter.timezone
        return site.page("archive", issues=list_issues(site.db), zone=zone)

    return [
        Route("/", archive_endpoint, methods=["GET"]),
        Route("/issues/{number}", issue_endpoint, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_endpoint, methods=["GET", "POST"]),
    ]
