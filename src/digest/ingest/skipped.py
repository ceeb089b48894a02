"""What a poll left alone, in the words of its summary line (policy.hold decides it)."""

from __future__ import annotations

from digest.ingest.policy import Held, Hold
from digest.words import counted, plural, show_time


def held_back(held: Held, zone: str) -> str:
    """What the poll left alone, e.g. ``; 1 feed skipped, backing off until 2026-12-06 07:10
    CET: --force polls it; 1 gone feed skipped (HTTP 410): `digest feeds retry URL` polls it
    again`` (empty when every active feed was fetched)."""
    ours, asked = held.count(Hold.BACKING_OFF), held.count(Hold.ASKED_TO_WAIT)
    n, gone = ours + asked, held.count(Hold.GONE)
    text = ""
    if n:
        until = show_time(held.until, zone)
        text += f"; {counted(n, 'feed')} skipped, backing off "
        text += f"until {until}" if n == 1 else f"(the first until {until})"
        if ours and not asked:
            text += f": --force polls {plural('it', n)}"
        elif ours:
            text += f": --force polls {ours:,} ({asked:,} asked to wait by their server)"
    if gone:
        text += f"; {counted(gone, 'gone feed')} skipped (HTTP 410): "
        text += f"`digest feeds retry URL` polls {plural('it', gone)} again"
    return text
