"""What a refusal or a bounce does to a subscriber (pure decisions: no I/O), the same whether
the SMTP server refused the address while we sent (RCPT or DATA) or a report came back later
(a DSN, a webhook): a 550 5.1.1 is a dead address either way.

By status code (RFC 3463): 5.x.x hard, 4.x.x soft. A full mailbox (5.2.2), a message too big
(5.2.3, 5.3.4) and policy refusals (5.7.x: a block list, DMARC, "looks like spam") say nothing
about the address, so they are soft: one provider blocking us must not unsubscribe its every
user at once. A hard bounce ends mail to an address at once; soft ones only after
bounces.soft_limit of them within bounces.soft_window; a complaint ends it for good.
"""

from __future__ import annotations

import re

from digest.types import BounceKind, SubscriberStatus

ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
BASIC = re.compile(r"(?<![\d.])([45]\d\d)[ -](?=\S)")
_SOFT_PERMANENT = re.compile(r"5\.(2\.[23]|3\.4|7\.\d{1,3})$")


def kind_of_code(code: str) -> BounceKind:
    """Hard or soft, by an enhanced status code such as 5.1.1."""
    if code.startswith("4") or _SOFT_PERMANENT.match(code):
        return BounceKind.SOFT
    return BounceKind.HARD


def code_in(line: str) -> str:
    """The status code a server's reply gives: its enhanced code, else X.0.0 of its basic one
    (550: 5.0.0), else ""."""
    enhanced = ENHANCED.search(line)
    if enhanced:
        return enhanced.group(0)
    basic = BASIC.search(line)
    return f"{basic.group(1)[0]}.0.0" if basic else ""


def new_status(
    kind: BounceKind, current: SubscriberStatus, soft_in_window: int, soft_limit: int
) -> SubscriberStatus | None:
    """The subscriber's status after this event (None: unchanged). ``soft_in_window`` counts
    their soft bounces within the window, this one included."""
    if kind == BounceKind.COMPLAINT:
        return None if current == SubscriberStatus.COMPLAINED else SubscriberStatus.COMPLAINED
    if current != SubscriberStatus.ACTIVE:
        return None  # unsubscribed, bounced or complained already: nothing more to stop
    if kind == BounceKind.HARD or soft_in_window >= soft_limit:
        return SubscriberStatus.BOUNCED
    return None
