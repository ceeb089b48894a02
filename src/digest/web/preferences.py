"""A reader's own page, linked from every issue's footer (GET/POST /preferences/TOKEN):
change sections, unsubscribe, subscribe again. Each change is kept as an event with its time
and the request's address; each form carries a CSRF token."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.delivery.consent import change_sections, describe_sections, resubscribe
from digest.delivery.subscribers import SubscriberInfo, subscriber_for_token, unsubscribe
from digest.delivery.tokens import PREFERENCES
from digest.errors import InputError
from digest.storage import utcnow
from digest.types import SubscriberStatus
from digest.web.forms import field, form_token, form_token_ok, take_form
from digest.web.signup import chosen_sections, section_boxes
from digest.web.site import Site

log = logging.getLogger(__name__)


def routes(site: Site) -> list[Route]:
    def preferences_page(request: Request) -> Response:
        subscriber = _subscriber(site, request.path_params["token"])
        if subscriber is None:
            return site.page("bad_link", 400, private=True, what="preferences", signup=site.signup)
        return page(site, subscriber)

    async def preferences_post(request: Request) -> Response:
        token = request.path_params["token"]
        return await take_form(request, site, lambda form, ip: change(site, token, form, ip))

    return [
        Route("/preferences/{token}", preferences_page, methods=["GET"]),
        Route("/preferences/{token}", preferences_post, methods=["POST"]),
    ]


def change(site: Site, token: str, form: dict[str, list[str]], ip: str | None) -> Response:
    """Apply one form of the page (save sections, unsubscribe, resubscribe) and show it again
    with a line saying what changed."""
    subscriber = _subscriber(site, token)
    if subscriber is None:
        return site.page("bad_link", 400, private=True, what="preferences", signup=site.signup)
    now = utcnow()
    if not form_token_ok(site.key, form, "preferences", subscriber.id, now):
        error = (
            "Please make your change again on this page "
            "(it was open too long, or the form came from elsewhere)."
        )
        return page(site, subscriber, 400, error=error)
    action = field(form, "action")
    if action == "save":
        try:
            sections = chosen_sections(form.get("sections", []))
        except InputError as e:
            return page(site, subscriber, 400, error=f"{e} To stop getting it, unsubscribe.")
        changed = change_sections(site.db, subscriber.id, sections, now=now, ip=ip)
        only = " only" if sections is not None else ""
        notice = f"Saved: you get {describe_sections(sections)}{only}." if changed else "No change."
    elif action == "unsubscribe":
        unsubscribe(site.db, subscriber.id, now=now, ip=ip, how="preferences page")
        notice = "You're unsubscribed. You won't get another issue."
    elif action == "resubscribe":
        try:
            sections = chosen_sections(form.get("sections", []))
        except InputError as e:
            return page(site, subscriber, 400, error=str(e))
        resubscribe(site.db, subscriber.id, sections, now=now, ip=ip)
        notice = f"Welcome back: you get {describe_sections(sections)} again."
    else:
        return page(site, subscriber, 400, error="That form could not be read.")
    log.info("subscriber %d changed their preferences: %s", subscriber.id, action)
    fresh = _subscriber(site, token)
    return page(site, fresh or subscriber, notice=notice)


def page(
    site: Site,
    subscriber: SubscriberInfo,
    status: int = 200,
    *,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    stored = subscriber.stored_sections
    return site.page(
        "preferences",
        status,
        private=True,
        email=subscriber.email,
        active=subscriber.status == SubscriberStatus.ACTIVE,
        state=subscriber.status,
        sections=describe_sections(stored),
        boxes=section_boxes(stored),
        csrf=form_token(site.key, "preferences", subscriber.id, utcnow()),
        notice=notice,
        error=error,
    )


def _subscriber(site: Site, token: str) -> SubscriberInfo | None:
    return subscriber_for_token(site.db, site.key, token, PREFERENCES)
