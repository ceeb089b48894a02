"""Readers join: the sign-up form (GET/POST /subscribe) and the double opt-in (GET/POST
/confirm/TOKEN).

POST /subscribe answers every sign-up the same "check your inbox" page (naming the address as
typed), in the same time: a new, a pending or an active address, one that complained, a bot
caught by the honeypot, a client over web.signup_rate, an address past its emails for the
day. Nobody learns who is on the list: the request only queues the sign-up, and the outbox
(outbox.py) records it and mails what it asks for.

GET /confirm/TOKEN changes nothing (mail scanners follow links): it shows a Confirm button,
whose POST makes the subscriber active. An expired link offers to send a new one.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.delivery.confirmmail import valid_for
from digest.delivery.consent import confirm, describe_sections
from digest.delivery.subscribers import (
    SubscriberInfo,
    parse_address,
    parse_name,
    subscriber_for_confirm_token,
)
from digest.delivery.tokens import PREFERENCES, make_token
from digest.errors import InputError
from digest.storage import utcnow
from digest.types import ML, SECTION_TITLES, SYSTEMS, ConsentSource, SubscriberStatus
from digest.web.forms import client_address, field, form_token, form_token_ok, take_form
from digest.web.limits import client_key
from digest.web.outbox import WELCOME, MailJob, SignUpJob
from digest.web.site import Site

log = logging.getLogger(__name__)

# A field people never see (moved off-screen, skipped by the tab key): bots fill it in.
HONEYPOT = "company_site"
CHOICES = (ML, SYSTEMS)


def routes(site: Site) -> list[Route]:
    def subscribe_form(request: Request) -> Response:
        if not site.signup:
            return site.page("not_found", 404)
        return form_page(site, utcnow())

    async def subscribe(request: Request) -> Response:
        if not site.signup:
            return site.page("not_found", 404)
        return await take_form(request, site, lambda form, ip: take_signup(site, form, ip))

    def confirm_page(request: Request) -> Response:
        return confirmation(site, request.path_params["token"], None, client_address(request))

    async def confirm_post(request: Request) -> Response:
        token = request.path_params["token"]
        return await take_form(request, site, lambda form, ip: confirmation(site, token, form, ip))

    return [
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm_post, methods=["POST"]),
    ]


def chosen_sections(values: list[str]) -> str | None:
    """The sections ticked on a form, stored form: both (or every) is None; InputError for
    none at all."""
    chosen = [key for key in CHOICES if key in values]
    if not chosen:
        raise InputError("Choose at least one section.")
    return None if len(chosen) == len(CHOICES) else ",".join(chosen)


def section_boxes(sections: str | None) -> list[tuple[str, str, bool]]:
    """(key, title, ticked) for each section a reader can choose."""
    ticked = set(CHOICES) if sections is None else set(sections.split(","))
    return [(key, SECTION_TITLES[key], key in ticked) for key in CHOICES]


def form_page(
    site: Site,
    now: datetime,
    status: int = 200,
    *,
    email: str = "",
    name: str = "",
    sections: list[str] | None = None,
    error: str | None = None,
) -> Response:
    boxes = [(k, t, sections is None or k in sections) for k, t, _ in section_boxes(None)]
    return site.page(
        "subscribe",
        status,
        private=True,
        csrf=form_token(site.key, "subscribe", 0, now),
        email=email,
        name=name,
        boxes=boxes,
        honeypot=HONEYPOT,
        error=error,
        blogs=site.blog_list.by_section() if site.blog_list else [],
        **site.about(),
    )


def check_inbox(site: Site, address: str) -> Response:
    """The one answer to every sign-up that was read: the same page for any address (it
    shows the address as typed, which tells nothing the sender didn't know)."""
    ttl = valid_for(site.settings.web.confirm_ttl)
    return site.page("check_inbox", private=True, email=address, valid_for=ttl)


def take_signup(site: Site, form: dict[str, list[str]], ip: str | None) -> Response:
    """Check the form and queue the sign-up. Whatever the address (new, pending, active, one
    that complained), this does the same work: the database is the outbox's business."""
    now = utcnow()
    given = {"email": field(form, "email").strip(), "name": field(form, "name").strip()}
    ticked = form.get("sections", [])
    if not form_token_ok(site.key, form, "subscribe", 0, now):
        error = "This form was open too long (or came from elsewhere): please send it again."
        return form_page(site, now, 400, **given, sections=ticked, error=error)
    try:
        address = parse_address(given["email"])[0]
        name = parse_name(given["name"] or None)
        sections = chosen_sections(ticked)
    except InputError as e:
        return form_page(site, now, 400, **given, sections=ticked, error=str(e))
    if field(form, HONEYPOT):
        log.info("sign-up with the hidden field filled in (a bot): answered, nothing done")
    elif not _over_rate(site, ip):
        site.outbox.offer(SignUpJob(address, name, sections, ip, now.isoformat()))
    return check_inbox(site, address)


def _over_rate(site: Site, ip: str | None) -> bool:
    key = client_key(ip)
    refused = site.signups.refusals(key, time.monotonic())
    if refused == 1:
        log.warning(
            "sign-ups from %s over web.signup_rate (%d an hour): answered, and nothing done "
            "for it until its hour is over",
            key,
            site.signups.limit,
        )
    return refused > 0


def confirmation(
    site: Site, token: str, form: dict[str, list[str]] | None, ip: str | None
) -> Response:
    """GET (form None): the page with the Confirm button; POST: confirm, or send a new link
    for an expired one."""
    now = utcnow()
    found = subscriber_for_confirm_token(site.db, site.key, token)
    if found is None:
        return site.page("bad_link", 400, private=True, what="confirmation", signup=site.signup)
    subscriber, expires = found
    if subscriber.status == SubscriberStatus.ACTIVE:
        return subscribed(site, subscriber, already=True)
    if expires <= now:
        if form is not None and form_token_ok(site.key, form, "resend", subscriber.id, now):
            return _resend(site, subscriber, now, ip)
        csrf = form_token(site.key, "resend", subscriber.id, now)
        return site.page("confirm_expired", 410, private=True, email=subscriber.email, csrf=csrf)
    if form is not None and form_token_ok(site.key, form, "confirm", subscriber.id, now):
        info = confirm(site.db, subscriber.id, now=now, ip=ip)
        log.info("subscriber %d confirmed", info.id)
        if site.settings.web.welcome:
            site.outbox.offer(MailJob(info.id, WELCOME))
        return subscribed(site, info, already=False)
    return site.page(
        "confirm",
        200 if form is None else 400,
        private=True,
        email=subscriber.email,
        sections=_described(subscriber),
        csrf=form_token(site.key, "confirm", subscriber.id, now),
        retry=form is not None,
    )


def subscribed(
    site: Site, subscriber: SubscriberInfo, *, already: bool, again: bool = False
) -> Response:
    """Done: when issues come, the latest one, the reader's own page (``again``: back from
    the unsubscribed page)."""
    token = make_token(site.key, subscriber.id, subscriber.email, PREFERENCES)
    return site.page(
        "subscribed",
        private=True,
        already=already,
        again=again,
        email=subscriber.email,
        sections=_described(subscriber),
        preferences=f"/preferences/{token}",
        **site.about(),
    )


def _resend(site: Site, subscriber: SubscriberInfo, now: datetime, ip: str | None) -> Response:
    source = subscriber.source or ConsentSource.WEB
    job = SignUpJob(subscriber.email, None, subscriber.stored_sections, ip, now.isoformat(), source)
    site.outbox.offer(job)
    return check_inbox(site, subscriber.email)


def _described(subscriber: SubscriberInfo) -> str:
    return describe_sections(subscriber.stored_sections)
