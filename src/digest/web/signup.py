"""Readers join: the sign-up form (GET/POST /subscribe) and the double opt-in (GET/POST
/confirm/TOKEN).

POST /subscribe answers every sign-up the same "check your inbox" page, byte for byte: a new,
a pending or an active address, a bot caught by the honeypot, a client over
web.signup_rate, an address past its emails for the day. Nobody learns who is on the list.

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
from digest.delivery.consent import SignUp, confirm, describe_sections, sign_up, undo_mail
from digest.delivery.subscribers import SubscriberInfo, info_of, parse_address, parse_name
from digest.delivery.tokens import PREFERENCES, check_confirm_token, confirm_claim, make_token
from digest.errors import InputError
from digest.models import Subscriber
from digest.storage import utcnow
from digest.types import ML, SECTION_TITLES, SYSTEMS, ConsentSource, SubscriberStatus
from digest.web.forms import client_address, field, form_token, form_token_ok, take_form
from digest.web.limits import client_key
from digest.web.outbox import MailJob
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
    )


def check_inbox(site: Site) -> Response:
    """The one answer to every sign-up that was read."""
    return site.page(
        "check_inbox", private=True, valid_for=valid_for(site.settings.web.confirm_ttl)
    )


def take_signup(site: Site, form: dict[str, list[str]], ip: str | None) -> Response:
    now = utcnow()
    given = {"email": field(form, "email").strip(), "name": field(form, "name").strip()}
    ticked = form.get("sections", [])
    if not form_token_ok(site.key, form, "subscribe", 0, now):
        error = "This form was open too long (or came from elsewhere): please send it again."
        return form_page(site, now, 400, **given, sections=ticked, error=error)
    if field(form, HONEYPOT):
        log.info("sign-up with the hidden field filled in (a bot): answered, nothing done")
        return check_inbox(site)
    try:
        address = parse_address(given["email"])[0]
        name = parse_name(given["name"] or None)
        sections = chosen_sections(ticked)
    except InputError as e:
        return form_page(site, now, 400, **given, sections=ticked, error=str(e))
    if _over_rate(site, ip):
        return check_inbox(site)
    _mail(site, sign_up(site.db, address, name=name, sections=sections, now=now, ip=ip))
    return check_inbox(site)


def _mail(site: Site, signup: SignUp) -> None:
    """Queue the email a sign-up asked for; one that can't be queued doesn't count."""
    if signup.mail is None or site.outbox.offer(MailJob(signup.subscriber_id, signup.mail)):
        return
    if signup.event_id is not None:
        undo_mail(site.db, signup.event_id)


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
    found = _confirm_subject(site, token)
    if found is None:
        return site.page("bad_link", 400, private=True, what="confirmation", signup=site.signup)
    subscriber, expired = found
    if subscriber.status == SubscriberStatus.ACTIVE:
        return subscribed(site, subscriber, already=True)
    if expired:
        if form is not None and form_token_ok(site.key, form, "resend", subscriber.id, now):
            return _resend(site, subscriber, now, ip)
        csrf = form_token(site.key, "resend", subscriber.id, now)
        return site.page("confirm_expired", 410, private=True, email=subscriber.email, csrf=csrf)
    if form is not None and form_token_ok(site.key, form, "confirm", subscriber.id, now):
        info = confirm(site.db, subscriber.id, now=now, ip=ip)
        log.info("subscriber %d confirmed", info.id)
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


def subscribed(site: Site, subscriber: SubscriberInfo, *, already: bool) -> Response:
    token = make_token(site.key, subscriber.id, subscriber.email, PREFERENCES)
    return site.page(
        "subscribed",
        private=True,
        already=already,
        email=subscriber.email,
        sections=_described(subscriber),
        preferences=f"/preferences/{token}",
    )


def _confirm_subject(site: Site, token: str) -> tuple[SubscriberInfo, bool] | None:
    """The subscriber a genuine confirm token names, and whether it has expired."""
    claim = confirm_claim(token)
    if claim is None:
        return None
    with site.db.session() as s:
        row = s.get(Subscriber, claim[0])
        if row is None or not check_confirm_token(site.key, token, row.id, row.email):
            return None
        return info_of(row), claim[1] <= utcnow()


def _resend(site: Site, subscriber: SubscriberInfo, now: datetime, ip: str | None) -> Response:
    sections = ",".join(subscriber.sections) if subscriber.sections is not None else None
    signup = sign_up(
        site.db,
        subscriber.email,
        name=None,
        sections=sections,
        now=now,
        ip=ip,
        source=subscriber.source or ConsentSource.WEB,
    )
    _mail(site, signup)
    return check_inbox(site)


def _described(subscriber: SubscriberInfo) -> str:
    stored = ",".join(subscriber.sections) if subscriber.sections is not None else None
    return describe_sections(stored)
