"""One subscriber's MIME message: multipart/alternative with the list and unsubscribe headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from digest.config import Settings
from digest.errors import InputError
from digest.types import RenderedEmail

# CR, LF and other controls would end a header early and start one of the reader's choosing.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def unsubscribe_url(settings: Settings, token: str) -> str:
    """The one-click unsubscribe URL of a token (List-Unsubscribe and the footer link)."""
    return f"{settings.newsletter.base_url.rstrip('/')}/unsubscribe/{token}"


def sender_domain(settings: Settings) -> str:
    """The domain of newsletter.from, for Message-ID and List-Id ("localhost" when none)."""
    address = parseaddr(settings.newsletter.from_addr)[1]
    domain = address.rpartition("@")[2].strip().lower()
    return domain or "localhost"


def default_list_id(settings: Settings) -> str:
    """RFC 2919 List-Id: the title as phrase, a slug of it under the sender's domain."""
    title = settings.newsletter.title
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "digest"
    return f"{title} <{slug}.{sender_domain(settings)}>"


def build_message(
    rendered: RenderedEmail,
    settings: Settings,
    *,
    to: str,
    unsubscribe_url: str,
    list_id: str | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The complete message one subscriber gets; their unsubscribe link replaces the placeholder.

    Raises InputError when a header value holds a line break (header injection).
    """
    for name, value in (("To", to), ("unsubscribe URL", unsubscribe_url)):
        _refuse_unsafe(name, value)
    personal = rendered.personal(unsubscribe_url)
    msg = EmailMessage()
    msg["From"] = settings.newsletter.from_addr
    msg["To"] = to
    if settings.newsletter.reply_to:
        msg["Reply-To"] = settings.newsletter.reply_to
    msg["Subject"] = _one_line(personal.subject)
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(settings))
    msg["List-Id"] = list_id or default_list_id(settings)
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # RFC 2046: the last alternative is the preferred one, so text first, then HTML.
    msg.set_content(personal.text, subtype="plain", charset="utf-8")
    msg.add_alternative(personal.html, subtype="html", charset="utf-8")
    return msg


def as_bytes(msg: EmailMessage) -> bytes:
    """The message as it goes over SMTP: CRLF line ends, long lines folded."""
    return msg.as_bytes(policy=SMTP)


def address_header(email: str, name: str | None = None) -> str:
    """A To: value for an address and an optional display name, quoted as needed."""
    _refuse_unsafe("address", email)
    if not name:
        return email
    _refuse_unsafe("name", name)
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def _refuse_unsafe(what: str, value: str) -> None:
    if _UNSAFE.search(value):
        raise InputError(f"{what} {value!r} contains a line break or control character")


def _one_line(text: str) -> str:
    return " ".join(_UNSAFE.sub(" ", text).split())
