"""What a message in the bounce mailbox says, and about whom (pure: no I/O).

In this order:

1. A complaint: RFC 5965 ARF, ``multipart/report; report-type=feedback-report`` with
   ``Feedback-Type: abuse`` (other feedback types, such as ``not-spam``, are ignored).
2. A delivery status notification: RFC 3464 ``multipart/report; report-type=delivery-status``,
   judged per recipient by its status code (RFC 3463): 5.x.x hard, 4.x.x soft. A full mailbox
   (5.2.2), a message too big (5.2.3, 5.3.4) and policy refusals (5.7.x: a block list, DMARC,
   "looks like spam") say nothing about the address, so they are soft: one provider blocking
   us must not unsubscribe its every user at once. ``Action: delayed`` is a warning, not a
   bounce: the message is still being retried, and its final outcome reports again (a full
   mailbox would otherwise count twice, as the delay and as the final failure).
3. An auto-reply (RFC 3834 ``Auto-Submitted``, the X-Autoreply family, Exchange's
   ``X-Auto-Response-Suppress``, "Out of Office" subjects) that does not look like a bounce:
   ignored.
4. The non-standard bounces of Exim, qmail, old Postfix, Exchange, Yahoo and others, through
   flufl.bounce's detectors (Mailman's, maintained since 2002); soft when the text gives a
   4xx code or says the mailbox is full, else hard. What they find only as temporary (Gmail's
   "Delivery Status Notification (Delay)" and the like) is a delay warning: ignored.
5. Anything else: unrecognised (left in the mailbox).

The original message's Message-ID (a quoted message or its headers) and the addresses the
report was sent to (a VERP address) are collected for the caller to match with its records.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

from digest.delivery.bouncerules import BASIC, ENHANCED, code_in, kind_of_code
from digest.types import BounceKind, BounceReport

# Where a report says it was delivered (the receiving server adds these) or addressed.
_ADDRESSED = ("delivered-to", "x-original-to", "envelope-to", "to", "x-envelope-to")
_SOFT_WORDS = re.compile(
    r"mailbox (is )?full|over ?quota|quota exceeded|insufficient (disk )?space|"
    r"temporar(y|ily)|try (again )?later|has been delayed|will be retried",
    re.IGNORECASE,
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status|failure|has failed|incomplete|delayed)|"
    r"failure notice|returned mail|mail delivery (failed|failure|system)|could not be delivered|"
    r"non-?delivery|delivery notification",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|"
    r"abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|"
    r"away from|on vacation|vacation|i am away|ooo\b)",
    re.IGNORECASE,
)
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autoreply-from")
_QUOTED_ID = re.compile(r"^message-id:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_QUOTED_RETURN = re.compile(r"^return-path:\s*<([^>\s]+)>", re.IGNORECASE | re.MULTILINE)
DELAYED = "delayed"
DELAY_WARNING = "delay warning (still being retried: not a bounce)"
_SCAN_CHARS = 200_000  # a bounce quotes our issue (~90 KB); enough to find its headers
_DIAGNOSTIC_CHARS = 500


def classify(raw: bytes) -> BounceReport:
    """What one message of the bounce mailbox says (see the module's order)."""
    msg = message_from_bytes(raw)
    text = _text(msg)
    addressed = _addressed_to(msg, text)
    message_id = _original_message_id(msg, text)
    found = _feedback(msg) or _dsn(msg)
    if found is None:
        auto = _auto_reply(msg)
        if auto and not _looks_like_bounce(msg):
            return BounceReport(None, "auto-reply", ignored=True, addressed_to=addressed)
        found = _non_standard(msg, text)
        if found is None:
            if auto:
                return BounceReport(None, "auto-reply", ignored=True, addressed_to=addressed)
            return BounceReport(None, "not a bounce", addressed_to=addressed)
    kind, note, recipients, diagnostic, ignored = found
    return BounceReport(
        kind,
        note,
        recipients=recipients,
        diagnostic=diagnostic,
        message_id=message_id,
        addressed_to=addressed,
        ignored=ignored,
    )


_Found = tuple[BounceKind | None, str, tuple[str, ...], str, bool]


def _feedback(msg: Message) -> _Found | None:
    """An ARF report: a complaint when its Feedback-Type is abuse."""
    fields = next((_fields(p) for p in msg.walk() if _is(p, "message/feedback-report")), None)
    if fields is None:
        return None
    feedback_type = (fields.get("feedback-type") or "").strip().lower()
    recipients = _addresses(fields.get_all("original-rcpt-to") or [])
    if not recipients:
        original = _original(msg)
        recipients = _addresses(original.get_all("to") or []) if original else ()
    if feedback_type != "abuse":
        return None, f"feedback report ({feedback_type or 'no type'})", recipients, "", True
    agent = _one_line(fields.get("user-agent") or "")
    return BounceKind.COMPLAINT, "abuse", recipients, agent, False


def _dsn(msg: Message) -> _Found | None:
    """An RFC 3464 report: the first failing recipient's kind, and everyone of that kind."""
    blocks = [
        block
        for part in msg.walk()
        if _is(part, "message/delivery-status")
        for block in _blocks(part)[1:]  # the first block is about the message as a whole
    ]
    if not blocks:
        return None
    judged = [(_dsn_kind(block), block) for block in blocks]
    failing = [(kind, block) for kind, block in judged if kind[0] is not None]
    if not failing:
        if any(code == DELAYED for (_k, code), _b in judged):
            return None, DELAY_WARNING, (), "", True
        return None, "delivery notice (delivered or relayed)", (), "", True
    kind, code = failing[0][0]
    same = [block for (k, _c), block in failing if k == kind]
    recipients = _addresses(
        [b.get("original-recipient") or b.get("final-recipient") or "" for b in same]
    )
    diagnostic = _one_line(_strip_type(failing[0][1].get("diagnostic-code") or ""))
    return kind, code, recipients, diagnostic, False


def _dsn_kind(block: Message) -> tuple[BounceKind | None, str]:
    action = (block.get("action") or "").strip().lower()
    if action.startswith(("delivered", "relayed", "expanded")):
        return None, action
    status = ENHANCED.search(block.get("status") or "") or ENHANCED.search(
        block.get("diagnostic-code") or ""
    )
    if action.startswith("delayed"):
        return None, DELAYED
    code = status.group(0) if status else ""
    if code:
        return kind_of_code(code), code
    if action.startswith(("failed", "error")):
        return BounceKind.HARD, "failed"
    return None, action or "no action"


def _non_standard(msg: Message, text: str) -> _Found | None:
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - a detector choking on odd input: not a bounce we can read
        return None
    if not (temporary or permanent):
        return None
    diagnostic = _diagnostic_line(text)
    if not permanent:  # still being retried
        return None, DELAY_WARNING, _decoded_addresses(temporary), diagnostic, True
    code = code_in(diagnostic)
    soft = (code and kind_of_code(code) == BounceKind.SOFT) or _SOFT_WORDS.search(text)
    kind = BounceKind.SOFT if soft else BounceKind.HARD
    note = code or ("temporary" if kind == BounceKind.SOFT else "failed")
    return kind, note, _decoded_addresses(permanent), diagnostic, False


def _decoded_addresses(found: frozenset[bytes]) -> tuple[str, ...]:
    return tuple(sorted(a.decode("ascii", "replace").lower() for a in found))


def _auto_reply(msg: Message) -> bool:
    submitted = (msg.get("auto-submitted") or "no").strip().lower()
    if not submitted.startswith("no"):
        return True
    if any(msg.get(name) is not None for name in _AUTO_HEADERS):
        return True
    if msg.get("x-auto-response-suppress") is not None and not _looks_like_bounce(msg):
        return True
    if (msg.get("precedence") or "").strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(str(msg.get("subject") or "")))


def _looks_like_bounce(msg: Message) -> bool:
    sender = parseaddr(str(msg.get("from") or ""))[1].lower()
    if sender.split("@")[0] in _BOUNCE_SENDERS or msg.get("x-failed-recipients"):
        return True
    if msg.get_content_type() == "multipart/report":
        return True
    return bool(_BOUNCE_SUBJECT.search(str(msg.get("subject") or "")))


# --- the original message and where the report went ------------------------------------------


def _original(msg: Message) -> Message | None:
    """The quoted original: a message/rfc822 part, or a text/rfc822-headers part's headers."""
    for part in msg.walk():
        if part is msg:
            continue
        if _is(part, "message/rfc822"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if _is(part, "text/rfc822-headers"):
            return HeaderParser().parsestr(_decoded(part))
    return None


def _original_message_id(msg: Message, text: str) -> str | None:
    original = _original(msg)
    if original is not None and original.get("message-id"):
        return str(original.get("message-id")).strip()
    own = str(msg.get("message-id") or "").strip()
    quoted = [m for m in _QUOTED_ID.findall(text) if m != own]
    return quoted[0] if quoted else None


def _addressed_to(msg: Message, text: str) -> tuple[str, ...]:
    """Every address the report was sent to, and our envelope sender where it quotes it."""
    found = _addresses([str(v) for name in _ADDRESSED for v in msg.get_all(name) or []])
    original = _original(msg)
    quoted = list(_QUOTED_RETURN.findall(text))
    if original is not None:
        quoted += [parseaddr(str(v))[1] for v in original.get_all("return-path") or []]
    return tuple(dict.fromkeys([*found, *(a.lower() for a in quoted if "@" in a)]))


# --- small readers ---------------------------------------------------------------------------


def _is(part: Message, content_type: str) -> bool:
    return part.get_content_type() == content_type


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    # Some servers send the status as base64 or in one string: parse the blocks ourselves.
    text = _decoded(part).replace("\r\n", "\n")
    return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\n\s*\n", text) if chunk]


def _fields(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return HeaderParser().parsestr(_decoded(part).replace("\r\n", "\n"))


def _decoded(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    return raw.decode(part.get_content_charset() or "utf-8", "replace")


def _text(msg: Message) -> str:
    """The readable text of a message and its quoted parts, cut at _SCAN_CHARS."""
    pieces: list[str] = []
    size = 0
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() not in ("text", "message"):
            continue
        piece = _decoded(part)
        pieces.append(piece)
        size += len(piece)
        if size > _SCAN_CHARS:
            break
    return "\n".join(pieces)[:_SCAN_CHARS]


def _addresses(values: list[str]) -> tuple[str, ...]:
    """Addresses from header values, DSN ``rfc822; a@b`` fields included, lower case."""
    cleaned = [_strip_type(v) for v in values]
    found = [a.lower() for _n, a in getaddresses(cleaned) if "@" in a]
    return tuple(dict.fromkeys(found))


def _strip_type(value: str) -> str:
    kind, sep, rest = str(value).partition(";")
    return rest.strip() if sep and kind.strip().lower() in ("rfc822", "smtp", "x-unix") else value


def _diagnostic_line(text: str) -> str:
    """The first line of the text carrying an SMTP reply code: the server's reason."""
    for line in text.splitlines()[:400]:
        if ENHANCED.search(line) or BASIC.search(line):
            return _one_line(line)
    return ""


def _one_line(value: str) -> str:
    return " ".join(str(value).split())[:_DIAGNOSTIC_CHARS]
