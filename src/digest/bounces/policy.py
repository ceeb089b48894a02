"""When an issue's rates are alarming (pure decisions: no I/O); what a bounce or complaint
does to a subscriber is delivery/bouncerules.new_status (refusals at sending use it too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from digest.delivery.bouncerules import new_status

__all__ = ["IssueRates", "new_status", "warnings"]

# Gmail asks bulk senders to keep spam reports under 0.1 % and never reach 0.3 %; Buttondown
# aims at failures under 1 %. A warning well before either line is reached.
COMPLAINT_WARN = 0.001
HARD_BOUNCE_WARN = 0.02


@dataclass(frozen=True)
class IssueRates:
    """What came back about one issue: its deliveries, bounces and complaints, and the rates.

    Bounce rate: refused at sending (5xx) or bounced hard later, out of every delivery tried;
    complaint rate: complaints out of the messages delivered. Each subscriber counts once.
    """

    number: int
    sent: int
    failed: int  # refused at sending (a 5xx)
    hard: int
    soft: int
    complaints: int

    @property
    def bounce_rate(self) -> float:
        tried = self.sent + self.failed
        return (self.failed + self.hard) / tried if tried else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "sent": self.sent,
            "failed": self.failed,
            "hard_bounces": self.hard,
            "soft_bounces": self.soft,
            "complaints": self.complaints,
            "bounce_rate": round(self.bounce_rate, 6),
            "complaint_rate": round(self.complaint_rate, 6),
        }


def warnings(before: IssueRates, after: IssueRates) -> list[str]:
    """A line for each rate this event pushed past its limit (once, as it crosses)."""
    found = []
    if before.complaint_rate <= COMPLAINT_WARN < after.complaint_rate:
        found.append(
            f"issue #{after.number}: complaint rate {after.complaint_rate:.2%} is over "
            f"{COMPLAINT_WARN:.1%} ({after.complaints} of {after.sent}); Gmail and Yahoo "
            "filter senders above 0.3 %"
        )
    if before.bounce_rate <= HARD_BOUNCE_WARN < after.bounce_rate:
        found.append(
            f"issue #{after.number}: hard-bounce rate {after.bounce_rate:.2%} is over "
            f"{HARD_BOUNCE_WARN:.0%} ({after.failed + after.hard} of "
            f"{after.sent + after.failed}); check how these addresses were collected"
        )
    return found
