"""Webhooks of sending services, each off until its setting turns it on, each authenticated as
its service documents: Amazon SES through SNS at /webhooks/ses (the SNS signature, verified
with a certificate from SNS's own hosts), Postmark at /webhooks/postmark (basic auth).

A request that fails authentication is refused (403 or 401) and changes nothing; a body that
is no JSON object (or nests too deep to read) is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.bounces import sns
from digest.bounces.apply import apply_report
from digest.bounces.services import postmark_report, ses_reports
from digest.bounces.sns import TYPES, certificate, sns_url_ok, verify
from digest.config import Settings
from digest.errors import ConfigError, InputError
from digest.types import BounceReport
from digest.web.forms import client_address
from digest.web.limits import HOUR_S, SlidingLimit, client_key
from digest.web.site import HEADERS, Site

log = logging.getLogger(__name__)

# SNS messages are at most 256 KB; Postmark's bounce webhooks far less.
MAX_BODY = 300 * 1024
# Postmark's basic auth: a password this long at least (Postmark takes any we choose), and
# this many failed logins per client address an hour, after which it is refused until the
# hour is over (429), right password or not: guessing goes nowhere.
POSTMARK_PASSWORD_MIN = 16
AUTH_FAILURES = 10


def routes(site: Site) -> list[Route]:
    """The webhooks turned on in the settings (none by default)."""
    hooks = site.settings.webhooks
    check_settings(site.settings)
    found = []
    if hooks.ses:
        found.append(Route("/webhooks/ses", _ses(site), methods=["POST"]))
    if hooks.postmark:
        found.append(Route("/webhooks/postmark", _postmark(site), methods=["POST"]))
    return found


def check_settings(settings: Settings) -> None:
    """ConfigError, in one line, for a webhook that would trust too much: SES without the
    one SNS topic to accept (any AWS account's topic would do), Postmark without a password
    long enough to withstand guessing."""
    hooks = settings.webhooks
    if hooks.ses and not hooks.ses_topic_arn:
        raise ConfigError(
            "webhooks.ses needs webhooks.ses_topic_arn (the ARN of your SNS topic): without it, "
            "any AWS account's topic could report bounces and complaints"
        )
    if hooks.postmark and len(hooks.postmark_password) < POSTMARK_PASSWORD_MIN:
        have = len(hooks.postmark_password)
        raise ConfigError(
            f"webhooks.postmark needs a webhooks.postmark_password of at least "
            f"{POSTMARK_PASSWORD_MIN} characters (basic auth; it has {have})"
        )


def _ses(site: Site) -> Any:
    topic = site.settings.webhooks.ses_topic_arn

    async def endpoint(request: Request) -> Response:
        message = await _json(request)
        # The database and the certificate's fetch are synchronous: off the event loop.
        return await run_in_threadpool(handle, message)

    def handle(message: dict[str, Any] | None) -> Response:
        if message is None or message.get("Type") not in TYPES:
            return _answer(400, "not an SNS message")
        if message.get("TopicArn") != topic:
            return _answer(403, "not our SNS topic")
        if not _signed(site, message):
            log.warning("webhooks/ses: a message with a bad signature refused")
            return _answer(403, "bad SNS signature")
        if message["Type"] == "SubscriptionConfirmation":
            return _confirm(message)
        if message["Type"] != "Notification":
            return _answer(200, "ok")
        try:
            notification = json.loads(str(message.get("Message", "")))
        except (ValueError, RecursionError):
            return _answer(400, "the SNS Message is not JSON")
        reports = ses_reports(notification if isinstance(notification, dict) else {})
        identity = str(message.get("MessageId", ""))
        return _apply(site, reports, "ses", identity)

    return endpoint


def _signed(site: Site, message: dict[str, Any]) -> bool:
    try:
        pem = certificate(site.db, str(message.get("SigningCertURL", "")))
    except InputError as e:
        log.warning("webhooks/ses: %s", e)
        return False
    return verify(message, pem)


def _confirm(message: dict[str, Any]) -> Response:
    url = str(message.get("SubscribeURL", ""))
    if not sns_url_ok(url):
        return _answer(400, "SubscribeURL is not on an SNS host")
    try:
        sns.http_get(url)  # (looked up here: tests replace it)
    except InputError as e:
        log.warning("webhooks/ses: confirming the subscription failed: %s", e)
        return _answer(502, "could not confirm the subscription")
    log.info("webhooks/ses: subscribed to %s", message.get("TopicArn"))
    return _answer(200, "subscribed")


def _postmark(site: Site) -> Any:
    hooks = site.settings.webhooks
    expected = f"{hooks.postmark_user}:{hooks.postmark_password}".encode()

    failures = SlidingLimit(AUTH_FAILURES)

    async def endpoint(request: Request) -> Response:
        client, now = client_key(client_address(request)), time.monotonic()
        if failures.over(client, now):
            return _answer(429, "too many failed logins", {"Retry-After": str(int(HOUR_S))})
        if not hmac.compare_digest(_basic_auth(request), expected):
            if failures.refusals(client, now) == 0 and failures.over(client, now):
                log.warning(
                    "webhooks/postmark: %d failed logins from %s in an hour: refused for the "
                    "rest of it",
                    AUTH_FAILURES,
                    client,
                )
            headers = {"WWW-Authenticate": 'Basic realm="digest webhooks"'}
            return _answer(401, "basic auth required", headers)
        payload = await _json(request)
        if payload is None:
            return _answer(400, "not a JSON object")
        identity = f"{payload.get('RecordType')}:{payload.get('ID')}"
        report = postmark_report(payload)
        return await run_in_threadpool(_apply, site, [report], "postmark", identity)

    return endpoint


def _apply(site: Site, reports: list[BounceReport], source: str, identity: str) -> Response:
    done = []
    for n, report in enumerate(reports):
        outcome = apply_report(
            site.db,
            site.settings,
            site.key,
            report,
            source=source,
            identity=f"{identity}#{n}",
            authenticated=True,  # the service's signature or secret was checked
        )
        done += [f"{report.kind}: {email}" for email in outcome.matched if report.kind]
    return _answer(200, "ok", applied=done)


def _basic_auth(request: Request) -> bytes:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""


async def _json(request: Request) -> dict[str, Any] | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # "[[[[…" 100,000 deep is a RecursionError
        return None
    return data if isinstance(data, dict) else None


def _answer(
    status: int, message: str, headers: dict[str, str] | None = None, **more: Any
) -> Response:
    return JSONResponse(
        {"status": message, **more}, status_code=status, headers={**HEADERS, **(headers or {})}
    )
