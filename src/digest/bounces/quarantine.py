"""Messages of the bounce mailbox that could not be read, set aside: how many, and the newest.

Anyone can mail a bounce address, so a message may be built to break the reader (a multipart
nested 1,400 deep makes the email package recurse past Python's limit; a VERP tag naming
subscriber 999,999,999,999 overflows PostgreSQL's integer). Such a message is moved to
bounces.quarantine_folder and counted here, and the fetch goes on with the next one: left in
the inbox, it would stop every later fetch, and the complaints behind it would never count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from digest.storage import Database

QUARANTINE_KEY = "bounces_quarantine"
# The newest ones kept with their reason; the count covers them all.
KEPT = 20


@dataclass(frozen=True)
class SetAside:
    """One message set aside: when, what it said it was, and why it could not be read."""

    at: str  # ISO time
    sender: str
    subject: str
    reason: str

    def line(self) -> str:
        return f"{self.at[:16].replace('T', ' ')}  {self.sender}  {self.subject!r}: {self.reason}"


@dataclass
class Quarantine:
    """Every message set aside so far (``recent``: the newest KEPT, newest first)."""

    count: int = 0
    recent: list[SetAside] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "recent": [s.__dict__ for s in self.recent]}


def read_quarantine(db: Database) -> Quarantine:
    stored = db.get_meta(QUARANTINE_KEY)
    if not stored:
        return Quarantine()
    data = json.loads(stored)
    return Quarantine(int(data["count"]), [SetAside(**r) for r in data["recent"]])


def record_set_aside(db: Database, now: datetime, sender: str, subject: str, reason: str) -> None:
    """Count one more message set aside (read, then written: two fetches at the same moment
    may count one message fewer; each message is still moved and logged)."""
    found = read_quarantine(db)
    entry = SetAside(now.isoformat(), sender[:200], subject[:200], reason[:300])
    found.count += 1
    found.recent = [entry, *found.recent][:KEPT]
    db.set_meta(QUARANTINE_KEY, json.dumps(found.as_json()))
