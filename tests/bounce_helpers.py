"""The bounce messages of tests/data/bounces, filled in for one subscriber and message."""

from __future__ import annotations

from pathlib import Path
from string import Template

BOUNCES = Path(__file__).parent / "data" / "bounces"
RCPT = "ann@example.com"
VERP = "bounces@news.example.org"
MSGID = "<issue1.ann@example.org>"


def bounce(name: str, rcpt: str = RCPT, verp: str = VERP, msgid: str = MSGID) -> bytes:
    """tests/data/bounces/NAME.eml with its placeholders filled, CRLF line ends."""
    text = (BOUNCES / f"{name}.eml").read_text()
    filled = Template(text).substitute(RCPT=rcpt, VERP=verp, MSGID=msgid)
    return filled.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def names() -> list[str]:
    return sorted(p.stem for p in BOUNCES.glob("*.eml"))
