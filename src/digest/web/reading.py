"""The pages a reader reaches from an issue: its web version, the archive (linking the sign-up
form and the Atom feed), and one-click unsubscribe (RFC 8058).

POST /unsubscribe/{token} acts at once and answers 200: no redirect, no cookie, nothing asked
of the client (RFC 8058 3.1); the page it answers offers "Subscribe again" (a POST of our own
form to the same URL, with the sections ticked there). GET only shows a page with a button,
because mail scanners follow links.
"""

from __future__ import annotations

import logging
import os
import re
from functools import partial
from html import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.delivery.consent import resubscribe
from digest.delivery.subscribers import SubscriberInfo, subscriber_for_token, unsubscribe
from digest.errors import InputError
from digest.issue.archive import archive_page, archive_stamp, pages, web_version
from digest.issue.sendtimes import SendWords
from digest.storage import utcnow
from digest.types import SubscriberStatus
from digest.web.forms import (
    Form,
    client_address,
    field,
    form_token,
    form_token_ok,
    peek_form,
    same_origin,
)
from digest.web.signup import chosen_sections, section_boxes, subscribed
from digest.web.site import HEADERS, PAGE_CSP, Site

log = logging.getLogger(__name__)

# The issue's own HTML: inline styles, remote images; no scripts, no forms, no framing.
ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'none'"
)
# Issue numbers are stored as 32-bit integers; a larger one is no issue (404), not a 500.
MAX_NUMBER = 2**31 - 1
# 50 issues a page, about a year of them (12 KB): at 260 issues the one page was 58 KB and
# read every issue's row.
PER_PAGE = 50
HTML = "text/html; charset=utf-8"
# The web version gets a bar above the issue: the archive, the feed, the sign-up form (the
# stored HTML is the email's, which can't know whether the form is open today). The bar sets
# its own colour: the "·" between links took the issue's #222 text, 1.31:1 on #222 (axe).
_BODY = re.compile(r"<body[^>]*>", re.IGNORECASE)
_BODY_END = re.compile(r"</body>", re.IGNORECASE)
_BAR = (
    '<nav aria-label="{title}" style="padding:10px 16px;background:#222222;color:#ffffff;'
    'font:14px/1.5 Helvetica,Arial,sans-serif;text-align:center"><a href="/" '
    'style="color:#ffffff">All issues</a>{signup} · <a href="/feed.xml" style="color:#ffffff">'
    "Feed</a></nav>"
)
# The issue's name (digest.html.j2) is a <div> for mail programs; on the web it is the
# page's heading (axe: page-has-heading-one).
_NAME = '<div class="name"'


def for_the_web(site: Site, html: str) -> str:
    """An issue's email HTML as a web page: the bar (a navigation landmark), the issue in
    <main>, its name the page's heading."""
    signup = ' · <a href="/subscribe" style="color:#ffffff">Subscribe</a>' if site.signup else ""
    bar = _BAR.format(title=escape(site.settings.newsletter.title), signup=signup)
    html = html.replace(_NAME, _NAME + ' role="heading" aria-level="1"', 1)
    html = _BODY.sub(lambda m: m.group(0) + bar + "<main>", html, count=1)
    return _BODY_END.sub("</main></body>", html, count=1)


def routes(site: Site) -> list[Route]:
    async def unsubscribe_endpoint(request: Request) -> Response:
        token, ip = request.path_params["token"], client_address(request)
        if request.method != "POST":
            return await run_in_threadpool(unsubscribe_page, site, token)
        form = await peek_form(request)
        if field(form, "action") != "resubscribe":
            return await run_in_threadpool(one_click, site, token, ip)
        if not same_origin(request):
            return site.page("refused", 403, private=True, reason="This form came from elsewhere.")
        return await run_in_threadpool(come_back, site, token, form, ip)

    def issue_endpoint(request: Request) -> Response:
        try:
            number = int(request.path_params["number"])
        except ValueError:
            number = -1
        html = web_version(site.db, site.settings, number) if 0 < number <= MAX_NUMBER else None
        if html is None:
            return site.page("not_found", 404)
        html = for_the_web(site, html)
        return HTMLResponse(html, headers={**HEADERS, "Content-Security-Policy": ISSUE_CSP})

    def archive_endpoint(request: Request) -> Response:
        page, stamp = page_number(request), archive_stamp(site.db)
        if page is None or page > pages(stamp, PER_PAGE):
            return site.page("not_found", 404)
        when = site.when()
        template = site.env.get_template("web/archive.html.j2")
        key = ("archive", page, stamp, when.schedule, _changed(template.filename))
        build = partial(archive, site, page, pages(stamp, PER_PAGE), when)
        headers = {**HEADERS, "Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}
        return site.archive_answers.answer(request, key, build, HTML, headers)

    return [
        Route("/", archive_endpoint, methods=["GET"]),
        Route("/issues/{number}", issue_endpoint, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_endpoint, methods=["GET", "POST"]),
    ]


def page_number(request: Request) -> int | None:
    """?page=N of the archive (1 without one); None for anything else (a 404)."""
    text = request.query_params.get("page", "1")
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        return None
    return int(text) or None


def archive(site: Site, page: int, last: int, when: SendWords) -> bytes:
    """Page ``page`` of ``last``: its issues, newest first, and the way to the others."""
    issues = archive_page(site.db, page, PER_PAGE)
    newer = None if page == 1 else "/" if page == 2 else f"/?page={page - 1}"
    older = f"/?page={page + 1}" if page < last else None
    response = site.page(
        "archive",
        issues=issues,
        signup=site.signup,
        description=site.settings.newsletter.description,
        when=when,
        page=page,
        pages=last,
        newer=newer,
        older=older,
    )
    return bytes(response.body)


def _changed(filename: str | None) -> int:
    """When a template file last changed (Jinja reads it again then: so does the cache)."""
    try:
        return os.stat(filename).st_mtime_ns if filename else 0
    except OSError:
        return 0


def unsubscribe_page(site: Site, token: str) -> Response:
    """GET: a button (mail scanners follow links), or, when already off the list, the way
    back."""
    subscriber = subscriber_for_token(site.db, site.key, token)
    if subscriber is None:
        return site.page("bad_token", 400, private=True)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return left(site, subscriber, already=True)
    return site.page("unsubscribe", private=True, email=subscriber.email)


def one_click(site: Site, token: str, ip: str | None) -> Response:
    """POST (RFC 8058): unsubscribed at once, 200, and the way back right there."""
    subscriber = subscriber_for_token(site.db, site.key, token)
    if subscriber is None:
        return site.page("bad_token", 400, private=True)
    if unsubscribe(site.db, subscriber.id, ip=ip):
        log.info("unsubscribed subscriber %d", subscriber.id)
    return left(site, subscriber, already=False)


def come_back(site: Site, token: str, form: Form, ip: str | None) -> Response:
    """ "Subscribe again" from the unsubscribed page (the same token: it came to their inbox),
    with the sections ticked there."""
    subscriber = subscriber_for_token(site.db, site.key, token)
    if subscriber is None:
        return site.page("bad_token", 400, private=True)
    now = utcnow()
    if not form_token_ok(site.key, form, "resubscribe", subscriber.id, now):
        error = "Please press Subscribe again on this page (it was open too long)."
        return left(site, subscriber, already=True, status=400, error=error)
    try:
        sections = chosen_sections(form.get("sections", []))
    except InputError as e:
        return left(site, subscriber, already=True, status=400, error=str(e))
    if resubscribe(site.db, subscriber.id, sections, now=now, ip=ip):
        log.info("subscriber %d subscribed again from the unsubscribed page", subscriber.id)
    back = subscriber_for_token(site.db, site.key, token)
    return subscribed(site, back or subscriber, already=False, again=True)


def left(
    site: Site,
    subscriber: SubscriberInfo,
    *,
    already: bool,
    status: int = 200,
    error: str | None = None,
) -> Response:
    """The unsubscribed page: done, and "Subscribe again" with the sections they had ticked,
    or one section only."""
    return site.page(
        "unsubscribed",
        status,
        private=True,
        email=subscriber.email,
        already=already,
        boxes=section_boxes(subscriber.stored_sections),
        csrf=form_token(site.key, "resubscribe", subscriber.id, utcnow()),
        error=error,
    )
