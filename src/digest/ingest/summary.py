"""What a poll did and how far it has come: its summary for the CLI, the daemon's log and the
last poll's record. No database nor HTTP here: a poll with nothing to do (ingest/idle.py)
answers with it before loading either."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from digest.ingest import policy
from digest.ingest.policy import Hold
from digest.ingest.skipped import held_back
from digest.types import FetchOutcome
from digest.words import counted, plural


@dataclass
class SyncResult:
    """What syncing the feeds table with the OPML file changed."""

    added: int = 0
    reactivated: int = 0
    deactivated: int = 0
    changed: int = 0


@dataclass
class PollSummary:
    """What one poll did, for the CLI and the daemon's log."""

    feeds: int = 0
    new_posts: int = 0
    updated_posts: int = 0
    not_modified: int = 0
    errors: int = 0
    skipped: int = 0  # active feeds not fetched: gone, held back, or stopped
    held: policy.Held = field(default_factory=lambda: policy.Held({}))  # why, for the line
    pages: int = 0  # teaser-only posts' pages counted for their reading time
    elapsed_s: float = 0.0
    sync: SyncResult = field(default_factory=SyncResult)
    fetches: Counter[FetchOutcome] = field(default_factory=Counter)  # requests, by outcome
    # Feeds a bug kept from being stored ("url: cannot store: TypeError: ..."): set aside as
    # failed, counted in errors, and the poll then fails with them (poll_feeds).
    store_failures: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, int]:
        return {
            "feeds": self.feeds,
            "new_posts": self.new_posts,
            "updated_posts": self.updated_posts,
            "not_modified": self.not_modified,
            "errors": self.errors,
        }

    def record(self) -> dict[str, float]:
        """What the last poll keeps of itself (for /healthz and /metrics)."""
        return {**self.as_json(), "elapsed_s": round(self.elapsed_s, 3)}

    def held_json(self) -> dict[str, int | str | None]:
        """The feeds held back (`digest poll --json` adds it): ``skipped`` backing off or asked
        to wait, until when the first of them (UTC), and ``gone`` (answered 410)."""
        h = self.held
        return {
            "skipped": h.count(Hold.BACKING_OFF, Hold.ASKED_TO_WAIT),
            "skipped_until": h.until.isoformat() if h.until else None,
            "gone": h.count(Hold.GONE),
        }

    def line(self, zone: str = "UTC") -> str:
        """The summary in words; times in ``zone`` (the newsletter's, for people)."""
        return (
            f"polled {counted(self.feeds, 'feed')}: {self.new_posts:,} new "
            f"{plural('post', self.new_posts)}, {self.updated_posts:,} updated, "
            f"{self.not_modified:,} not modified, {counted(self.errors, 'error')} in "
            f"{self.elapsed_s:.1f} s" + _pages_read(self.pages) + held_back(self.held, zone)
        )


def _pages_read(pages: int) -> str:
    if pages == 1:
        return "; 1 teaser post's page read for its length"
    return f"; {pages:,} teaser posts' pages read for their length" if pages else ""


@dataclass(frozen=True)
class PollProgress:
    """How far a poll has come, for a progress line: feeds done of the total, what they
    brought, and the sites it still waits on (with their requests in flight)."""

    done: int
    total: int
    new_posts: int
    errors: int
    waiting_on: tuple[tuple[str, int], ...]


ProgressFn = Callable[[PollProgress], None]
