"""The database schema, declared once as SQLAlchemy Core tables.

models.py maps its ORM classes onto these tables; the poll reads and writes them with Core
statements and never loads the ORM (sqlalchemy.orm and the mapped classes were 109 ms of a
warm `digest poll`'s imports; a poll with nothing to do took 0.43 s with them, 0.30 s
without, min of 11). Migrations in ``digest/migrations`` must match this schema:
``tests/test_storage.py`` checks that the migrated schema agrees.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.engine import Dialect

from digest import columns as width
from digest.types import (
    BounceKind,
    ConsentSource,
    DeliveryStatus,
    EventKind,
    FeedStatus,
    FetchOutcome,
    IssueStatus,
    SubscriberStatus,
    Verdict,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StatusText(TypeDecorator[E]):
    """A StrEnum stored as its string: reads come back as the enum, writes must be one."""

    impl = String(width.STATUS)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


METADATA = MetaData()


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _required(name: str, type_: Any, *args: Any, **kwargs: Any) -> Column[Any]:
    """A NOT NULL column (what an ORM ``Mapped[X]`` without ``| None`` declared)."""
    return Column(name, type_, *args, nullable=False, **kwargs)


def _counter(name: str) -> Column[int]:
    return _required(name, Integer, default=0)


FEEDS = Table(
    "feeds",
    METADATA,
    _id(),
    # The URL as the OPML file names it: the identity used when syncing with the file.
    _required("source_url", String(width.URL), unique=True),
    # The URL fetched now: differs from source_url after a 301/308.
    _required("url", String(width.URL)),
    Column("title", String(width.NAME)),
    Column("site_url", String(width.URL)),
    Column("category", String(width.NAME)),
    _required("section", String(width.STATUS), default="other"),
    _required("active", Boolean, default=True),
    _required("added_at", UTCDateTime),
    # HTTP validators and the hash of the last body parsed.
    Column("etag", String(width.ETAG)),
    Column("last_modified", String(width.LAST_MODIFIED)),
    Column("body_hash", String(width.HASH)),
    # Health, as ingest/policy.py decides it after each fetch.
    _required("status", StatusText(FeedStatus), default=FeedStatus.NEW),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    # What the parser complained of in the last body it could still read (broken XML, a
    # wrong charset), for the feed's owner to fix; None when that body parsed cleanly.
    Column("last_warning", String(width.WARNING)),
    _counter("error_count"),
    Column("failing_since", UTCDateTime),
    Column("last_fetched_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    # The daemon's regular schedule: polled when due_at <= now (None: due now).
    Column("due_at", UTCDateTime),
    # A hold from backoff or Retry-After: not fetched before this, by anyone (None: no hold).
    Column("next_fetch_at", UTCDateTime),
    _required("polled_once", Boolean, default=False),
    # The list entry's rules (types.FeedRules), as the OPML file gives them.
    Column("rule_skip", Text),
    Column("rule_section", String(width.STATUS)),
    Column("rule_section_if", Text),
)

POSTS = Table(
    "posts",
    METADATA,
    _id(),
    _required("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE")),
    _required("key", String(width.URL)),
    _required("title", Text),
    Column("link", String(width.URL)),
    Column("canonical_url", String(width.URL)),
    Column("author", String(width.NAME)),
    Column("published", UTCDateTime),
    Column("updated", UTCDateTime),
    # The trusted date the issue window is judged by: published, else updated; None if neither.
    Column("date", UTCDateTime),
    _required("first_seen", UTCDateTime),
    # Seen on its feed's first successful poll: backlog, never "late" news.
    _required("from_first_poll", Boolean, default=False),
    _required("text", Text, default=""),
    Column("words", Integer),
    # The feed gives only a teaser: the reading time comes from the post's page, counted once
    # (page_words; 0 when the page could not be read, None while not yet fetched).
    _required("teaser", Boolean, default=False, server_default=false()),
    Column("page_words", Integer),
    # The entry's categories, and its links to other hosts as canonical URLs, one a line.
    Column("categories", Text),
    Column("links", Text),
    _required("content_hash", String(width.HASH)),
    # The one issue this post went into (the ledger that stops it going out twice).
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="SET NULL")),
    UniqueConstraint("feed_id", "key", name="uq_posts_feed_key"),
    # A poll's changed feed: its entries' stored posts by canonical link (a GUID that changed).
    Index("ix_posts_feed_canonical", "feed_id", "canonical_url"),
    Index("ix_posts_issue_date", "issue_id", "date"),
    Index("ix_posts_canonical", "canonical_url"),
    Index("ix_posts_pages", "teaser", "page_words"),
)
# A post's date as the issue window judges it: published, else first seen. The one expression
# of it, so that the queries match the index on it: the links that score an issue's picks are
# read from the posts of two windows (issue/signals.py), which scanned every post ever stored
# at each preview and send (140 ms of a send at 40,000 posts).
POSTED = func.coalesce(POSTS.c.date, POSTS.c.first_seen)
Index("ix_posts_posted", POSTED)
# Each blog's posts by that date: how many in the last half year and its latest before the
# week (issue/signals.py), a range per blog where one grouped pass read all its years.
Index("ix_posts_feed_posted", POSTS.c.feed_id, POSTED)

# A record of one request for a feed (pruned to the last days).
FETCHES = Table(
    "fetches",
    METADATA,
    _id(),
    _required("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE")),
    _required("at", UTCDateTime),
    _required("url", String(width.URL)),
    Column("status_code", Integer),
    _required("outcome", StatusText(FetchOutcome)),
    _counter("new_posts"),
    _counter("updated_posts"),
    _counter("bytes"),
    _counter("elapsed_ms"),
    Column("error", Text),
    Index("ix_fetches_feed_at", "feed_id", "at"),
    Index("ix_fetches_at", "at"),  # the prune of fetches older than two weeks
)

ISSUES = Table(
    "issues",
    METADATA,
    _id(),
    _required("number", Integer, unique=True),
    _required("window_start", UTCDateTime),
    _required("window_end", UTCDateTime),
    _required("created_at", UTCDateTime),
    _required("subject", Text),
    # The web version (no personal links).
    _required("html", Text),
    _required("text", Text),
    _counter("post_count"),
    _required("status", StatusText(IssueStatus), default=IssueStatus.RECORDED),
    # The titles of the week's picks, a JSON list (the archive shows them).
    Column("pick_titles", Text),
    # The curator's intro (`digest intro`, inline Markdown), kept with the issue it opened.
    Column("intro", Text),
    # /metrics counts issues by status: without it the count reads every issue's HTML.
    Index("ix_issues_status", "status"),
    # An issue's plan finds its recorded self and the issues after it by their window's end.
    Index("ix_issues_window_end", "window_end"),
)

# `digest pick URL [--note TEXT]` / `digest skip URL`: pending (issue_id None) until an issue
# is recorded, then that issue's.
CURATIONS = Table(
    "curations",
    METADATA,
    _id(),
    _required("url", String(width.URL)),  # canonical, as posts.canonical_url
    _required("verdict", StatusText(Verdict)),
    _required("created_at", UTCDateTime),
    Column("note", Text),  # under a pick, inline Markdown
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE")),
    Index("ix_curations_issue_url", "issue_id", "url"),
)

SUBSCRIBERS = Table(
    "subscribers",
    METADATA,
    _id(),
    _required("email", String(width.EMAIL), unique=True),
    Column("name", String(width.PERSON)),
    _required("status", StatusText(SubscriberStatus), default=SubscriberStatus.ACTIVE),
    # Comma-separated section keys; None: every section.
    Column("sections", String(width.SECTIONS)),
    _required("created_at", UTCDateTime),
    Column("unsubscribed_at", UTCDateTime),
    _counter("hard_bounces"),
    # The consent record: how they came, and when and from where they confirmed by email.
    # (created_at is when they came; for a pending sign-up, its latest attempt.)
    Column("source", StatusText(ConsentSource)),
    Column("confirmed_at", UTCDateTime),
    Column("confirm_ip", String(width.IP)),
    # The hourly prune of sign-ups left unconfirmed; and /metrics and `digest status` count
    # subscribers by status from this index alone (0.4 ms at 10,000 readers against 1.6-6.9 ms
    # reading the table, bench/scrape.py's database).
    Index("ix_subscribers_status_created", "status", "created_at"),
)

# One change in a subscriber's record (sign-up, confirmation, sections, leaving), with its
# time and the request's address when a reader made it: their history, for export.
SUBSCRIBER_EVENTS = Table(
    "subscriber_events",
    METADATA,
    _id(),
    _required("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE")),
    _required("at", UTCDateTime),
    _required("kind", StatusText(EventKind)),
    Column("detail", String(width.EVENT)),
    Column("ip", String(width.IP)),
    Index("ix_subscriber_events_at", "subscriber_id", "at"),
)

# An address erased at its owner's request, as a keyed hash only: an import skips it, and
# only the owner's own confirmation brings it back.
FORGOTTEN = Table(
    "forgotten",
    METADATA,
    Column("digest", String(width.HASH), primary_key=True),
    _required("forgotten_at", UTCDateTime),
)

# One (issue, subscriber) pair: the send log that makes `digest send` resumable.
DELIVERIES = Table(
    "deliveries",
    METADATA,
    _id(),
    _required("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE")),
    _required("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE")),
    _required("status", StatusText(DeliveryStatus), default=DeliveryStatus.PENDING),
    _counter("attempts"),
    Column("last_error", Text),
    Column("message_id", String(width.MESSAGE_ID)),
    _required("updated_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery"),
    # Neither database indexes a foreign key by itself: without this, deleting one
    # subscriber scans every delivery for its cascade (1,000 stale sign-ups took 394.6 s
    # at 2.6M rows); a bounce's latest issue reads it newest first.
    Index("ix_deliveries_subscriber_sent", "subscriber_id", "sent_at"),
    Index("ix_deliveries_message_id", "message_id"),  # a webhook's report (37 ms scan)
    # A send's pending rows, an issue's counts by status: read from the index alone.
    Index("ix_deliveries_issue_status", "issue_id", "status"),
)

# An issue's deliveries by status and its bounces and complaints, kept as they happen (in
# the transaction that changes a delivery or stores an event), so /metrics and `digest
# status` read a row, not the whole log; and what is left of the log once delivery.keep_log
# has passed and its rows are folded away (``folded_at``).
ISSUE_COUNTS = Table(
    "issue_counts",
    METADATA,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    _counter("pending"),
    _counter("sending"),
    _counter("sent"),
    _counter("failed"),
    _counter("skipped"),
    # Subscribers who bounced or complained (refusals while sending are the failed ones).
    _counter("hard"),
    _counter("soft"),
    _counter("complaints"),
    Column("last_sent_at", UTCDateTime),
    Column("folded_at", UTCDateTime),
)

# A running total kept as the work happens (posts stored), for /metrics.
COUNTS = Table(
    "counts",
    METADATA,
    Column("name", String(width.META_KEY), primary_key=True),
    _counter("n"),
)

# A bounce or complaint heard back about a subscriber (an inbox, a webhook), kept.
BOUNCE_EVENTS = Table(
    "bounce_events",
    METADATA,
    _id(),
    _required("at", UTCDateTime),
    _required("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE")),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="SET NULL")),
    _required("kind", StatusText(BounceKind)),
    _required("source", String(width.STATUS)),  # imap, ses, postmark
    _required("source_id", String(width.HASH)),
    Column("status_code", String(width.STATUS)),  # 5.1.1, abuse
    _required("diagnostic", Text, default=""),
    # A report read twice (a fetch that died before moving it, a webhook sent again) counts
    # once.
    UniqueConstraint("source_id", "subscriber_id", name="uq_bounce_events_source"),
    Index("ix_bounce_events_subscriber", "subscriber_id", "at"),
    Index("ix_bounce_events_issue", "issue_id", "kind"),
)

# Small key/value state: the generated secret key, the locks, schedule state.
META = Table(
    "meta",
    METADATA,
    Column("key", String(width.META_KEY), primary_key=True),
    _required("value", Text),
    _required("updated_at", UTCDateTime),
)
