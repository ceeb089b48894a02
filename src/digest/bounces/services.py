"""What the sending services' webhooks say, as reports (pure: no I/O).

Amazon SES (through SNS; its ``notificationType`` or event-publishing ``eventType``): a
Permanent bounce is hard, a Transient or Undetermined one soft, a complaint a complaint unless
its feedback type says ``not-spam``. Postmark: HardBounce and BadEmailAddress are hard; SoftBounce,
Transient, DnsError and the like soft; SpamComplaint a complaint; AutoResponder ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from digest.types import BounceKind, BounceReport

# Postmark's bounce types (its API reference, "Bounce types").
_POSTMARK = {
    "HardBounce": BounceKind.HARD,
    "BadEmailAddress": BounceKind.HARD,
    "SoftBounce": BounceKind.SOFT,
    "Transient": BounceKind.SOFT,
    "DnsError": BounceKind.SOFT,
    "MailFrontier": BounceKind.SOFT,
    "Blocked": BounceKind.SOFT,
    "SpamComplaint": BounceKind.COMPLAINT,
}


def ses_reports(notification: dict[str, Any]) -> list[BounceReport]:
    """One report per recipient of an SES Bounce or Complaint notification (others: none)."""
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = _dict(notification.get("mail"))
    message_id = _ses_message_id(mail)
    senders = [_str(mail.get("source")), _ses_header(mail, "return-path").strip("<>")]
    sent_from = tuple(a.lower() for a in senders if a)
    if kind == "Bounce":
        bounce = _dict(notification.get("bounce"))
        bounce_type = _str(bounce.get("bounceType"))
        subtype = _str(bounce.get("bounceSubType"))
        hard = bounce_type == "Permanent"
        return [
            BounceReport(
                BounceKind.HARD if hard else BounceKind.SOFT,
                _str(r.get("status")) or f"{bounce_type}/{subtype}"[:32],
                recipients=(_str(r.get("emailAddress")).lower(),),
                diagnostic=_one_line(_str(r.get("diagnosticCode")) or f"{bounce_type} {subtype}"),
                message_id=message_id,
                addressed_to=sent_from,
                at=_when(bounce.get("timestamp")),
            )
            for r in _list(bounce.get("bouncedRecipients"))
        ]
    if kind == "Complaint":
        complaint = _dict(notification.get("complaint"))
        feedback = _str(complaint.get("complaintFeedbackType")) or "abuse"
        return [
            BounceReport(
                None if feedback == "not-spam" else BounceKind.COMPLAINT,
                feedback[:32],
                recipients=(_str(r.get("emailAddress")).lower(),),
                diagnostic=_one_line(_str(complaint.get("userAgent"))),
                message_id=message_id,
                addressed_to=sent_from,
                ignored=feedback == "not-spam",
                at=_when(complaint.get("timestamp")),
            )
            for r in _list(complaint.get("complainedRecipients"))
        ]
    return []


def postmark_report(payload: dict[str, Any]) -> BounceReport:
    """A Postmark Bounce or SpamComplaint webhook as a report (other types are ignored)."""
    kind_name = _str(payload.get("Type"))
    kind = _POSTMARK.get(kind_name)
    return BounceReport(
        kind,
        kind_name[:32] or "unknown",
        recipients=(_str(payload.get("Email")).lower(),),
        diagnostic=_one_line(_str(payload.get("Details")) or _str(payload.get("Description"))),
        ignored=kind is None,
        at=_when(payload.get("BouncedAt")),
    )


def _ses_message_id(mail: dict[str, Any]) -> str | None:
    found = _ses_header(mail, "message-id") or _str(
        _dict(mail.get("commonHeaders")).get("messageId")
    )
    return found or None


def _ses_header(mail: dict[str, Any], name: str) -> str:
    for header in _list(mail.get("headers")):
        if _str(header.get("name")).lower() == name:
            return _str(header.get("value")).strip()
    return ""


def _when(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(_str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _one_line(value: str) -> str:
    return " ".join(value.split())[:500]
