"""One subscriber's MIME message: multipart/alternative with the list and unsubscribe headers.

An issue goes to thousands of subscribers whose copies differ only in a few headers and the
unsubscribe link, and the email package takes ~10 ms to encode a 90 KB HTML part. So
PreparedEmail encodes the parts once and each copy only adds its own URL and header lines.

Bodies go as 8bit (RFC 6152) in lines of at most LINE_BYTES: a tenth of the lines of
quoted-printable, which is what an SMTP server spends its time on (aiosmtpd reads line by
line). `seven_bit` turns a message into quoted-printable for a server without 8BITMIME.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime, make_msgid, parseaddr

from digest.config import Settings
from digest.errors import InputError
from digest.types import PREFERENCES_PLACEHOLDER, UNSUBSCRIBE_PLACEHOLDER, RenderedEmail

# RFC 2047's encoded words start so. Python's email package decodes one even inside a quoted
# name: "=?utf-8?q?x=0D=0ABcc:_v@example.com?=" came out as a line break and a Bcc: header.
ENCODED_WORD = "=?"
# CR, LF and other controls would end a header early and start one of the reader's choosing.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_UNSUBSCRIBE = UNSUBSCRIBE_PLACEHOLDER.encode("ascii")
_PREFERENCES = PREFERENCES_PLACEHOLDER.encode("ascii")
# A body split at its placeholders: text, placeholder, text, ... (the capture keeps them).
_PLACEHOLDERS = re.compile(b"(" + re.escape(_UNSUBSCRIBE) + b"|" + re.escape(_PREFERENCES) + b")")
_CRLF = b"\r\n"
# SMTP allows 998 bytes a line (aiosmtpd refuses more); a subscriber's own URL, up to
# URL_BYTES, may still replace one 44-byte placeholder in such a line. A line with more
# placeholders than that room allows makes its part quoted-printable.
LINE_BYTES = 850
URL_BYTES = 190
SMTP_LINE = 998
# Quoted-printable (RFC 2045 6.7), for a part with a line that can't be folded (a huge URL):
# printable ASCII but "=" stays as is, the rest is =XX.
_QP = [chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in range(256)]
_QP_LINE = 76


def unsubscribe_url(settings: Settings, token: str) -> str:
    """The one-click unsubscribe URL of a token (List-Unsubscribe and the footer link)."""
    return f"{settings.newsletter.base_url.rstrip('/')}/unsubscribe/{token}"


def preferences_url(settings: Settings, token: str) -> str:
    """The preferences page of a preferences token (the footer link beside unsubscribe)."""
    return f"{settings.newsletter.base_url.rstrip('/')}/preferences/{token}"


def one_click(settings: Settings) -> bool:
    """Whether mail offers RFC 8058 one-click unsubscribe (List-Unsubscribe-Post): only with an
    https base_url, as the RFC requires; over http the header is left out (and `digest send`
    and `digest run` say so), the List-Unsubscribe link and the footer's still work."""
    return settings.newsletter.base_url.lower().startswith("https://")


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
    preferences_url: str | None = None,
    list_id: str | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The complete message one subscriber gets; their unsubscribe link replaces the placeholder.

    The same bytes `digest send` puts on the wire, parsed back. Raises InputError when a header
    value holds a line break (header injection).
    """
    raw = PreparedEmail(rendered, settings, list_id=list_id).render(
        to=to,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        message_id=message_id,
        date=date,
    )
    msg = message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def as_bytes(msg: EmailMessage) -> bytes:
    """A message as it goes over SMTP: CRLF line ends, long lines folded."""
    return msg.as_bytes(policy=SMTP)


def address_header(email: str, name: str | None = None) -> str:
    """A To: value for an address and an optional display name, quoted as needed. A name that
    holds an encoded word's "=?" (stored before names were checked for it) is left out: the
    email package would decode it, line breaks and all, into the header."""
    _refuse_unsafe("address", email)
    if not name or ENCODED_WORD in name:
        return email
    _refuse_unsafe("name", name)
    local, _, domain = email.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain))


@dataclass(frozen=True)
class _Slot:
    """Where one of a subscriber's URLs goes (the placeholder it replaces); qp: encoded,
    last: ending a QP line."""

    placeholder: bytes = _UNSUBSCRIBE
    qp: bool = False
    last: bool = False


class PreparedEmail:
    """A rendered issue encoded once; render() makes one subscriber's message bytes cheaply."""

    def __init__(
        self,
        rendered: RenderedEmail,
        settings: Settings,
        *,
        list_id: str | None = None,
        feedback_id: str | None = None,
    ) -> None:
        self.domain = sender_domain(settings)
        self.archive_url = settings.newsletter.base_url.rstrip("/") + "/"
        boundary = "=_" + secrets.token_hex(16)  # "=_" never occurs in quoted-printable
        head = [("From", settings.newsletter.from_addr)]
        if settings.newsletter.reply_to:
            head.append(("Reply-To", settings.newsletter.reply_to))
        head.append(("Subject", _one_line(rendered.subject)))
        self._head = b"".join(_fold(name, value) for name, value in head)
        tail = [
            ("List-Id", list_id or default_list_id(settings)),
            *(
                [("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
                if one_click(settings)
                else []
            ),
            *([("Feedback-ID", feedback_id)] if feedback_id else []),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ]
        self._list_id = _fold(*tail[0])
        self._tail = b"".join(_fold(name, value) for name, value in tail[1:]) + _CRLF
        # RFC 2046: the last alternative is the preferred one, so text first, then HTML.
        self._body: list[bytes | _Slot] = []
        for subtype, content in (("plain", rendered.text), ("html", rendered.html)):
            opening = "\r\n" if self._body else ""  # the CRLF before a boundary belongs to it
            opening += f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            encoded, cte = _encode_body(content.encode("utf-8"))
            opening += f"Content-Transfer-Encoding: {cte}\r\n\r\n"
            self._body.append(opening.encode("ascii"))
            self._body.extend(encoded)
        self._body.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
        self._body = _merge(self._body)
        self._slots = frozenset(part for part in self._body if isinstance(part, _Slot))

    def render(
        self,
        *,
        to: str,
        unsubscribe_url: str,
        preferences_url: str | None = None,
        message_id: str | None = None,
        date: datetime | None = None,
    ) -> bytes:
        """One subscriber's message, CRLF line ends, ready for SMTP (without a preferences
        URL, the footer's preferences link leads to the archive)."""
        preferences_url = preferences_url or self.archive_url
        _refuse_unsafe("To", to)
        _refuse_unsafe("unsubscribe URL", unsubscribe_url)
        _refuse_unsafe("preferences URL", preferences_url)
        message_id = message_id or make_msgid(domain=self.domain)
        _refuse_unsafe("Message-ID", message_id)
        when = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
        urls = {
            _UNSUBSCRIBE: unsubscribe_url.encode("utf-8"),
            _PREFERENCES: preferences_url.encode("utf-8"),
        }
        # Only the encodings this message uses: quoted-printable is the rare case.
        slots = {
            slot: _qp(urls[slot.placeholder], last=slot.last) if slot.qp else urls[slot.placeholder]
            for slot in self._slots
        }
        out = [
            self._head[: self._head.index(b"\r\n") + 2],  # From
            _fold("To", to),
            self._head[self._head.index(b"\r\n") + 2 :],  # Reply-To, Subject
            b"Date: " + when.encode("ascii") + _CRLF,
            _fold("Message-ID", message_id),
            self._list_id,
            _fold("List-Unsubscribe", f"<{unsubscribe_url}>"),
            self._tail,
        ]
        out.extend(slots[part] if isinstance(part, _Slot) else part for part in self._body)
        return b"".join(out)


def _encode_body(body: bytes) -> tuple[list[bytes | _Slot], str]:
    """A part's encoded lines with a slot wherever the placeholder was, and its encoding."""
    lines = _fold_lines(body)
    if any(_too_long(line) for line in lines):
        return _encode_qp(body), "quoted-printable"
    out: list[bytes | _Slot] = []
    for line in lines:
        pieces = _PLACEHOLDERS.split(line)
        for k in range(0, len(pieces) - 1, 2):
            out.extend([pieces[k], _Slot(pieces[k + 1])])
        out.append(pieces[-1] + _CRLF)
    return out, "8bit"


def _too_long(line: bytes) -> bool:
    """Over LINE_BYTES, or over SMTP's limit once its placeholders hold the longest URLs."""
    growth = len(_PLACEHOLDERS.findall(line)) * (URL_BYTES - len(_UNSUBSCRIBE))
    return len(line) > LINE_BYTES or len(line) + growth > SMTP_LINE


def _encode_qp(body: bytes) -> list[bytes | _Slot]:
    out: list[bytes | _Slot] = []
    for line in body.splitlines():
        pieces = _PLACEHOLDERS.split(line)
        for k in range(0, len(pieces) - 1, 2):
            if pieces[k]:
                out.append(_qp(pieces[k], last=False))
            last = k == len(pieces) - 3 and not pieces[-1]
            out.append(_Slot(pieces[k + 1], qp=True, last=last))
        if pieces[-1] or len(pieces) == 1:
            out.append(_qp(pieces[-1], last=True))
    return out


def _fold_lines(body: bytes) -> list[bytes]:
    """Lines broken at a space where longer than LINE_BYTES (HTML and text don't mind);
    a line with no space to break at stays long, and the part goes quoted-printable."""
    lines: list[bytes] = []
    for line in body.splitlines():
        while len(line) > LINE_BYTES:
            cut = line.rfind(b" ", 0, LINE_BYTES)
            if cut <= 0:
                break
            lines.append(line[:cut])
            line = line[cut + 1 :]
        lines.append(line)
    return lines


def seven_bit(raw: bytes) -> bytes:
    """The same message with quoted-printable bodies, for a server without 8BITMIME."""
    msg = message_from_bytes(raw, policy=SMTP)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            assert isinstance(part, EmailMessage)
            content = part.get_content()
            part.set_content(content, subtype=part.get_content_subtype(), cte="quoted-printable")
    return msg.as_bytes(policy=SMTP)


def _merge(parts: list[bytes | _Slot]) -> list[bytes | _Slot]:
    """Runs of constant bytes joined, so a copy joins a handful of pieces, not thousands."""
    out: list[bytes | _Slot] = []
    run: list[bytes] = []
    for part in parts:
        if isinstance(part, bytes):
            run.append(part)
            continue
        out.extend([b"".join(run), part])
        run = []
    out.append(b"".join(run))
    return out


def _qp(data: bytes, *, last: bool) -> bytes:
    """Quoted-printable lines of data: a hard line end when last, else a soft break after it."""
    if last and len(data) == 0:
        return _CRLF
    tokens = [_QP[b] for b in data]
    if last and data[-1] in (9, 32):
        tokens[-1] = f"={data[-1]:02X}"  # trailing white space is dropped in transit
    lines: list[str] = []
    line: list[str] = []
    width = 0
    for token in tokens:
        if width + len(token) > _QP_LINE - 1:  # room for the soft break "="
            lines.append("".join(line) + "=")
            line, width = [], 0
        line.append(token)
        width += len(token)
    lines.append("".join(line) + ("" if last else "="))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _fold(name: str, value: str) -> bytes:
    """One header line; plain ASCII the fast way, anything else through the email package."""
    # A value with no space can't be folded anyway: one line (up to 998 is legal) rather than
    # the email package's break right after the colon, which some parsers keep as a space.
    short = len(name) + len(value) < 76 or (" " not in value and len(value) < 900)
    if value.isascii() and short:
        _refuse_unsafe(name, value)
        return f"{name}: {value}\r\n".encode("ascii")
    msg = EmailMessage(policy=SMTP)
    try:
        msg[name] = value
    except ValueError as e:
        raise InputError(f"{name} header {value!r}: {e}") from None
    return SMTP.fold_binary(name, msg[name])


def _refuse_unsafe(what: str, value: str) -> None:
    if _UNSAFE.search(value):
        raise InputError(f"{what} {value!r} contains a line break or control character")


def _one_line(text: str) -> str:
    return " ".join(_UNSAFE.sub(" ", text).split())
