"""The numbers `GET /metrics` exposes, read from the database at each scrape: requests for
feeds by outcome, posts stored, feeds failing, issues, deliveries and subscribers by status,
the bounce and complaint rates of the latest issues, and when the last poll and send ran.

Counts of what the database holds are gauges; requests for feeds are a counter kept in the
database (ingest.tally), so it survives restarts and counts `digest poll` runs from cron too.
None of it grows with history: posts and deliveries are totals kept as the work happens
(ingest.tally, delivery.counts), not counted over their tables (1,362 ms a scrape at 2.6
million delivery rows before, bench/scrape.py); issues are counted by their status index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from digest.bounces.events import rates_in
from digest.delivery import counts
from digest.delivery.subscribers import counts_in
from digest.ingest.tally import (
    FETCH_TOTALS_KEY,
    LAST_POLL_KEY,
    fetch_totals_of,
    last_poll_of,
    post_total,
)
from digest.locks import LockHolder
from digest.metakeys import DAEMON, lock_key
from digest.models import Feed, Issue, Meta
from digest.storage import Database
from digest.types import DeliveryStatus, FeedStatus, IssueStatus

# Issues whose bounce and complaint rates are exposed, newest first.
RATES_EXPOSED = 5
DAEMON_LOCK_KEY = lock_key(DAEMON)

Labels = tuple[tuple[str, str], ...]


@dataclass
class Metric:
    """One metric family: name, help, kind and a value per set of labels."""

    name: str
    help: str
    kind: Literal["gauge", "counter"] = "gauge"
    values: dict[Labels, float] = field(default_factory=dict)

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = float(value)

    @property
    def label_names(self) -> list[str]:
        return sorted({name for labels in self.values for name, _value in labels})


def collect(db: Database, now: datetime) -> list[Metric]:
    """Every metric that has a value, from a dozen small queries in one transaction (on
    PostgreSQL a session per group of them made 52 round trips a scrape; one makes 16).
    Raises StorageError."""
    with db.session() as s:
        meta = _meta(s)
        metrics = [*_feeds(s, meta), *_issues(s), _subscribers(s), *_times(s, meta, now)]
    return [m for m in metrics if m.values]


def _meta(s: Session) -> dict[str, str]:
    """The meta rows a scrape reads: the fetch totals, the last poll, the daemon's lock."""
    keys = (FETCH_TOTALS_KEY, LAST_POLL_KEY, DAEMON_LOCK_KEY)
    rows = s.execute(select(Meta.key, Meta.value).where(Meta.key.in_(keys)))
    return {key: value for key, value in rows}


def _feeds(s: Session, meta: dict[str, str]) -> list[Metric]:
    fetches = Metric("digest_fetches", "Requests for feeds, by outcome", "counter")
    feeds = Metric("digest_feeds", "Active feeds, by status")
    failing = Metric("digest_feeds_failing", "Active feeds whose last request failed")
    posts = Metric("digest_posts", "Posts stored")
    for outcome, n in fetch_totals_of(meta.get(FETCH_TOTALS_KEY)).items():
        fetches.set(n, outcome=outcome)
    by_status = _counts(s, select(Feed.status, func.count()).where(Feed.active))
    failing.set(
        s.scalar(select(func.count()).where(Feed.active, Feed.failing_since.is_not(None))) or 0
    )
    posts.set(post_total(s))
    for status in FeedStatus:
        feeds.set(by_status.get(status, 0), status=str(status))
    return [fetches, feeds, failing, posts]


def _issues(s: Session) -> list[Metric]:
    issues = Metric("digest_issues", "Issues recorded, by status (sent: every delivery done)")
    deliveries = Metric("digest_deliveries", "Deliveries of every issue, by status")
    bounced = Metric("digest_issue_bounce_rate", "Share of an issue's deliveries bounced hard")
    complained = Metric("digest_issue_complaint_rate", "Share of an issue's mail marked as spam")
    # ix_issues_status: the statuses alone, not every issue's HTML.
    by_issue = _counts(s, select(Issue.status, func.count()))
    by_delivery = counts.totals(s)
    for status in IssueStatus:
        issues.set(by_issue.get(status, 0), status=str(status))
    for dstatus in DeliveryStatus:
        deliveries.set(by_delivery.get(dstatus, 0), status=str(dstatus))
    for rates in rates_in(s, last=RATES_EXPOSED):
        bounced.set(rates.bounce_rate, issue=str(rates.number))
        complained.set(rates.complaint_rate, issue=str(rates.number))
    return [issues, deliveries, bounced, complained]


def _counts(s: Session, query: Select[*tuple[Any, ...]]) -> dict[str, int]:
    """{status: count} of a ``select(X.status, func.count())``, grouped here."""
    rows = s.execute(query.group_by(query.selected_columns[0])).all()
    return {str(row[0]): int(row[1]) for row in rows}


def _subscribers(s: Session) -> Metric:
    metric = Metric("digest_subscribers", "Subscribers, by status")
    for status, n in counts_in(s).items():
        metric.set(n, status=status)
    return metric


def _times(s: Session, meta: dict[str, str], now: datetime) -> list[Metric]:
    polled = Metric("digest_last_poll_timestamp_seconds", "When the last poll ended (Unix time)")
    duration = Metric("digest_last_poll_duration_seconds", "How long the last poll took")
    sent = Metric("digest_last_send_timestamp_seconds", "When the last message went (Unix time)")
    heartbeat = Metric("digest_daemon_heartbeat_age_seconds", "Age of the daemon's heartbeat")
    poll = last_poll_of(meta.get(LAST_POLL_KEY))
    if poll is not None:
        elapsed = float(poll.get("elapsed_s", 0))
        ended = datetime.fromisoformat(poll["at"]) + timedelta(seconds=elapsed)
        polled.set(ended.timestamp())
        duration.set(elapsed)
    last_sent = counts.last_sent(s)
    if last_sent is not None:
        sent.set(last_sent.timestamp())
    lock = meta.get(DAEMON_LOCK_KEY)
    holder = LockHolder.from_json(lock) if lock else None
    if holder is not None:
        heartbeat.set(max(0.0, (now - holder.heartbeat).total_seconds()))
    return [polled, duration, sent, heartbeat]
