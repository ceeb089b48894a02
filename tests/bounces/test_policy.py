"""The pure decisions: a subscriber's status after an event, and when a rate warns."""

from __future__ import annotations

import pytest

from digest.bounces.policy import IssueRates, new_status, warnings
from digest.types import BounceKind, SubscriberStatus

ACTIVE, BOUNCED = SubscriberStatus.ACTIVE, SubscriberStatus.BOUNCED
UNSUBSCRIBED, COMPLAINED = SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED


@pytest.mark.parametrize(
    ("kind", "current", "soft", "expected"),
    [
        (BounceKind.HARD, ACTIVE, 0, BOUNCED),
        (BounceKind.SOFT, ACTIVE, 4, None),
        (BounceKind.SOFT, ACTIVE, 5, BOUNCED),
        (BounceKind.HARD, UNSUBSCRIBED, 0, None),  # left already: stays as they chose
        (BounceKind.SOFT, BOUNCED, 9, None),
        (BounceKind.COMPLAINT, ACTIVE, 0, COMPLAINED),
        (BounceKind.COMPLAINT, UNSUBSCRIBED, 0, COMPLAINED),  # never back, even by import
        (BounceKind.COMPLAINT, BOUNCED, 0, COMPLAINED),
        (BounceKind.COMPLAINT, COMPLAINED, 0, None),
        (BounceKind.HARD, COMPLAINED, 0, None),
    ],
)
def test_new_status(
    kind: BounceKind, current: SubscriberStatus, soft: int, expected: SubscriberStatus | None
) -> None:
    assert new_status(kind, current, soft, 5) == expected


def rates(sent: int, failed: int = 0, hard: int = 0, complaints: int = 0) -> IssueRates:
    return IssueRates(7, sent, failed, hard, 0, complaints)


def test_rates() -> None:
    r = rates(990, failed=10, hard=10, complaints=1)
    assert r.bounce_rate == pytest.approx(20 / 1000)
    assert r.complaint_rate == pytest.approx(1 / 990)
    assert rates(0).bounce_rate == 0.0 and rates(0).complaint_rate == 0.0
    assert r.as_json()["hard_bounces"] == 10


def test_a_warning_once_as_a_rate_crosses_its_line() -> None:
    # 0.1 % complaints: the second complaint of 1,000 crosses it; the third says nothing new.
    assert warnings(rates(1000, complaints=0), rates(1000, complaints=1)) == []
    crossed = warnings(rates(1000, complaints=1), rates(1000, complaints=2))
    assert len(crossed) == 1 and "complaint rate 0.20%" in crossed[0]
    assert warnings(rates(1000, complaints=2), rates(1000, complaints=3)) == []
    # 2 % hard bounces, sending refusals included.
    hard = warnings(rates(100, failed=1, hard=1), rates(100, failed=1, hard=2))
    assert len(hard) == 1 and "hard-bounce rate 2.97%" in hard[0]
