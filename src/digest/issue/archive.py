"""The recorded issues as the web reads them: a stamp that changes whenever the archive does
(known before any page is built), the archive a page at a time, and the newest finished
issues with their web versions for the Atom feed.

Every query here costs the same at 260 issues as at 5: a few rows by the index on number.
On SQLite an issue's stored HTML (~90 KB) lives in overflow pages, and a column stored after
it (status, pick_titles) can only be read by walking them: a filter on status over every
issue took 16 ms at 260 issues, against 0.04 ms for the stamp below, which reads only columns
stored before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from digest.issue.newsletter import Newsletter
from digest.issue.plan import Config, RecordedIssue
from digest.models import Issue
from digest.storage import Database
from digest.types import PREFERENCES_PLACEHOLDER, UNSUBSCRIBE_PLACEHOLDER, IssueStatus

# Finished: sent, or recorded while sending is off (the archive shows those too). An issue
# still going out joins the feed once it has reached every subscriber.
FINISHED = frozenset({IssueStatus.SENT, IssueStatus.SKIPPED})
# Rows read past the feed's length, for issues still going out: one is usual (this week's),
# more only after sends failed for weeks; past that, one query filters on status instead.
_SLACK = 4


@dataclass(frozen=True)
class ArchiveStamp:
    """What changes whenever an issue is recorded (issues are never edited or deleted)."""

    count: int
    newest: int | None  # the newest issue's number
    newest_at: datetime | None  # when the newest was recorded


@dataclass(frozen=True)
class FeedEntry:
    """A finished issue as the feed lists it (its HTML is read only to build the feed)."""

    number: int
    subject: str
    created_at: datetime


def archive_stamp(db: Database) -> ArchiveStamp:
    """One statement, the same cost at any history (SQLite: the unique index on number, and
    no column stored after the HTML)."""
    query = select(func.count(), func.max(Issue.number), func.max(Issue.created_at))
    with db.session() as s:
        count, newest, newest_at = s.execute(query).one()
    return ArchiveStamp(count, newest, newest_at)


def pages(stamp: ArchiveStamp, per_page: int) -> int:
    """How many pages the archive has (one, empty, before the first issue)."""
    return max(1, -(-stamp.count // per_page))


def archive_page(db: Database, page: int, per_page: int) -> list[RecordedIssue]:
    """Page ``page`` (from 1) of every recorded issue, newest first, without their HTML."""
    query = (
        select(
            Issue.id,
            Issue.number,
            Issue.window_start,
            Issue.window_end,
            Issue.subject,
            Issue.post_count,
            Issue.created_at,
            Issue.pick_titles,
        )
        .order_by(Issue.number.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    with db.session() as s:
        rows = s.execute(query).all()
    return [RecordedIssue(*row[:7], tuple(json.loads(row.pick_titles or "[]"))) for row in rows]


def feed_entries(db: Database, count: int) -> list[FeedEntry]:
    """The ``count`` newest finished issues, newest first: one statement over the newest
    rows by number (the ones still going out are few and new), a filter on status only when
    more than a few are unfinished."""
    columns = select(Issue.number, Issue.subject, Issue.created_at, Issue.status)
    newest = columns.order_by(Issue.number.desc())
    with db.session() as s:
        rows = s.execute(newest.limit(count + _SLACK)).all()
        finished = [r for r in rows if r.status in FINISHED]
        if len(finished) < count and len(rows) == count + _SLACK:
            filtered = newest.where(Issue.status.in_(FINISHED)).limit(count)
            finished = list(s.execute(filtered).all())
    return [FeedEntry(r.number, r.subject, r.created_at) for r in finished[:count]]


def web_version(db: Database, config: Config, number: int) -> str | None:
    """The web version of issue ``number``; None when there is no such issue."""
    return web_versions(db, config, [number]).get(number)


def web_versions(db: Database, config: Config, numbers: Iterable[int]) -> dict[int, str]:
    """The web versions (archive_html) of the issues numbered ``numbers``, in one query."""
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    query = select(Issue.number, Issue.html).where(Issue.number.in_(wanted))
    with db.session() as s:
        rows = s.execute(query).all()
    base_url = Newsletter.of(config).base_url
    return {row.number: archive_html(row.html, base_url) for row in rows}


def archive_html(html: str, base_url: str) -> str:
    """A stored issue's HTML for the web: no personal links (an issue recorded before it had
    its web footer: its unsubscribe and preferences links lead to the archive)."""
    archive = f"{base_url}/"
    return html.replace(UNSUBSCRIBE_PLACEHOLDER, archive).replace(PREFERENCES_PLACEHOLDER, archive)
