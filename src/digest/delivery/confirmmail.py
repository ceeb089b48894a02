"""The emails of the sign-up: a link to confirm (or, for an address already on the list, its
own links), and once confirmed a short welcome (web.welcome). Each from its own templates
(``confirm*.j2``, ``welcome*.j2``, overridable in newsletter.templates) with an issue's care:
multipart/alternative (text, then HTML), Date, Message-ID, inlined CSS, no header injection,
DKIM through the transport.

The confirmation carries no List-Unsubscribe: the address is on no list until its owner
confirms, and ignoring the email is all it takes to stay off it. The welcome does: by then
the reader is on the list.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from digest.config import Settings
from digest.delivery.consent import describe_sections
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import (
    address_header,
    default_list_id,
    preferences_url,
    sender_domain,
    unsubscribe_url,
)
from digest.delivery.subscribers import SubscriberInfo
from digest.delivery.tokens import PREFERENCES, make_confirm_token, make_token
from digest.delivery.verp import envelope_sender, feedback_id
from digest.errors import RenderError
from digest.issue.plan import RecordedIssue
from digest.issue.render import date_range, environment, inline_css
from digest.types import EventKind
from digest.words import counted


def confirm_url(settings: Settings, token: str) -> str:
    return f"{settings.newsletter.base_url.rstrip('/')}/confirm/{token}"


def confirmation_email(
    settings: Settings, key: str, subscriber: SubscriberInfo, kind: EventKind, now: datetime
) -> bytes:
    """The message for one sign-up, CRLF line ends, ready for SMTP: a confirm link valid for
    web.confirm_ttl (kind CONFIRM_SENT), or the links of an active subscriber (REMINDER_SENT)."""
    ttl = settings.web.confirm_ttl
    token = make_confirm_token(key, subscriber.id, subscriber.email, now + ttl)
    context = {
        "title": settings.newsletter.title,
        "email": subscriber.email,
        "already": kind == EventKind.REMINDER_SENT,
        "confirm_url": confirm_url(settings, token),
        "preferences_url": preferences_url(
            settings, make_token(key, subscriber.id, subscriber.email, PREFERENCES)
        ),
        "sections": _sections(subscriber),
        "description": settings.newsletter.description,
        "valid_for": valid_for(ttl),
        "base_url": settings.newsletter.base_url.rstrip("/"),
    }
    return _email(settings, subscriber, "confirm", context, now)


def welcome_email(
    settings: Settings,
    key: str,
    subscriber: SubscriberInfo,
    latest: RecordedIssue | None,
    when: str,
    now: datetime,
) -> bytes:
    """The short email a reader gets once confirmed (web.welcome): when the first issue comes
    (``when``: sendtimes.SendWords.first), the latest issue's link, their own links. They are
    on the list now, so it carries List-Unsubscribe like an issue."""
    base_url = settings.newsletter.base_url.rstrip("/")
    unsubscribe = unsubscribe_url(settings, make_token(key, subscriber.id, subscriber.email))
    zone = ZoneInfo(settings.newsletter.timezone)
    context = {
        "title": settings.newsletter.title,
        "description": settings.newsletter.description,
        "email": subscriber.email,
        "sections": _sections(subscriber),
        "when": when,
        "latest": latest,
        "latest_url": f"{base_url}/issues/{latest.number}" if latest else None,
        "latest_dates": date_range(latest.window_start, latest.window_end, zone) if latest else "",
        "preferences_url": preferences_url(
            settings, make_token(key, subscriber.id, subscriber.email, PREFERENCES)
        ),
        "unsubscribe_url": unsubscribe,
        "base_url": base_url,
    }
    headers = [("List-Id", default_list_id(settings)), ("List-Unsubscribe", f"<{unsubscribe}>")]
    if base_url.startswith("https://"):  # RFC 8058: one-click only over https
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return _email(settings, subscriber, "welcome", context, now, headers)


def _email(
    settings: Settings,
    subscriber: SubscriberInfo,
    template: str,
    context: dict[str, Any],
    now: datetime,
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """One message from templates TEMPLATE_subject.txt.j2, TEMPLATE.txt.j2 and
    TEMPLATE.html.j2: multipart/alternative, CRLF line ends, ready for SMTP."""
    env = environment(settings.newsletter.templates)
    try:
        subject = " ".join(env.get_template(f"{template}_subject.txt.j2").render(context).split())
        text = env.get_template(f"{template}.txt.j2").render(context).strip() + "\n"
        html = env.get_template(f"{template}.html.j2").render(subject=subject, **context)
    except jinja2.TemplateError as e:
        raise RenderError(f"{template} email template: {e}") from e
    msg = EmailMessage()
    msg["From"] = settings.newsletter.from_addr
    msg["To"] = address_header(subscriber.email, subscriber.name)
    if settings.newsletter.reply_to:
        msg["Reply-To"] = settings.newsletter.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender_domain(settings))
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
    msg["Feedback-ID"] = feedback_id(settings, None)
    for name, value in headers or []:
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(inline_css(html), subtype="html")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # the email package copies it into the first part
    return msg.as_bytes(policy=SMTP)


def _sections(subscriber: SubscriberInfo) -> str:
    return describe_sections(subscriber.stored_sections)


def send_confirmation(
    settings: Settings, key: str, subscriber: SubscriberInfo, kind: EventKind, now: datetime
) -> None:
    """Build and send one confirmation email now (the CLI's `add --confirm`)."""
    raw = confirmation_email(settings, key, subscriber, kind, now)
    with SmtpTransport(settings) as transport:
        transport.send_with_retry(
            raw, subscriber.email, sender=confirmation_sender(settings, key, subscriber)
        )


def confirmation_sender(settings: Settings, key: str, subscriber: SubscriberInfo) -> str:
    """The envelope sender (MAIL FROM) of a confirmation email: the bounce address, tagged for
    its subscriber like an issue's, so a bounce of the confirmation is heard too."""
    return envelope_sender(settings, key, subscriber.id, subscriber.email, None)


def valid_for(ttl: timedelta) -> str:
    """How long a link works, as the email and the pages say it: "7 days", "48 hours",
    "2.5 hours", "90 minutes", "45 seconds"."""
    seconds = round(ttl.total_seconds())
    if seconds > 2 * 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{round(seconds / 3600, 1):g} hours"
    if seconds >= 2 * 60:
        return f"{round(seconds / 60)} minutes"
    return counted(seconds, "second")
