"""The email a sign-up gets: a link to confirm (or, for an address already on the list, its
own links), from its own templates (``confirm_subject.txt.j2``, ``confirm.txt.j2``,
``confirm.html.j2``, overridable in newsletter.templates) with an issue's care:
multipart/alternative (text, then HTML), Date, Message-ID, inlined CSS, no header injection,
DKIM through the transport.

It carries no List-Unsubscribe: the address is on no list until its owner confirms, and
ignoring the email is all it takes to stay off it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

import jinja2

from digest.config import Settings
from digest.delivery.consent import describe_sections
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import address_header, preferences_url, sender_domain
from digest.delivery.subscribers import SubscriberInfo
from digest.delivery.tokens import PREFERENCES, make_confirm_token, make_token
from digest.delivery.verp import envelope_sender, feedback_id
from digest.errors import RenderError
from digest.issue.render import environment, inline_css
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
        "sections": describe_sections(
            ",".join(subscriber.sections) if subscriber.sections is not None else None
        ),
        "valid_for": valid_for(ttl),
        "base_url": settings.newsletter.base_url.rstrip("/"),
    }
    env = environment(settings.newsletter.templates)
    try:
        subject = " ".join(env.get_template("confirm_subject.txt.j2").render(context).split())
        text = env.get_template("confirm.txt.j2").render(context).strip() + "\n"
        html = inline_css(env.get_template("confirm.html.j2").render(subject=subject, **context))
    except jinja2.TemplateError as e:
        raise RenderError(f"confirmation email template: {e}") from e
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
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # the email package copies it into the first part
    return msg.as_bytes(policy=SMTP)


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
