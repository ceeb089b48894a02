"""The database schema as SQLAlchemy 2 typed ORM classes.

Migrations in ``digest/migrations`` must match these classes; ``tests/test_storage.py`` checks
that the migrated schema and the models agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    pass


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The URL as the OPML file names it: the identity used when syncing with the file.
    source_url: Mapped[str] = mapped_column(String(width.URL), unique=True)
    # The URL fetched now: differs from source_url after a 301/308.
    url: Mapped[str] = mapped_column(String(width.URL))
    title: Mapped[str | None] = mapped_column(String(width.NAME))
    site_url: Mapped[str | None] = mapped_column(String(width.URL))
    category: Mapped[str | None] = mapped_column(String(width.NAME))
    section: Mapped[str] = mapped_column(String(width.STATUS), default="other")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # HTTP validators and the hash of the last body parsed.
    etag: Mapped[str | None] = mapped_column(String(width.ETAG))
    last_modified: Mapped[str | None] = mapped_column(String(width.LAST_MODIFIED))
    body_hash: Mapped[str | None] = mapped_column(String(width.HASH))

    # Health, as ingest/policy.py decides it after each fetch.
    status: Mapped[FeedStatus] = mapped_column(StatusText(FeedStatus), default=FeedStatus.NEW)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # What the parser complained of in the last body it could still read (broken XML, a
    # wrong charset), for the feed's owner to fix; None when that body parsed cleanly.
    last_warning: Mapped[str | None] = mapped_column(String(width.WARNING))
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The daemon's regular schedule: polled when due_at <= now (None: due now).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A hold from backoff or Retry-After: not fetched before this, by anyone (None: no hold).
    next_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    polled_once: Mapped[bool] = mapped_column(Boolean, default=False)
    # The list entry's rules (types.FeedRules), as the OPML file gives them.
    rule_skip: Mapped[str | None] = mapped_column(Text)
    rule_section: Mapped[str | None] = mapped_column(String(width.STATUS))
    rule_section_if: Mapped[str | None] = mapped_column(Text)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("feed_id", "key", name="uq_posts_feed_key"),
        Index("ix_posts_feed_link", "feed_id", "link"),
        Index("ix_posts_issue_date", "issue_id", "date"),
        Index("ix_posts_canonical", "canonical_url"),
        Index("ix_posts_pages", "teaser", "page_words"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(width.URL))
    title: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(width.URL))
    canonical_url: Mapped[str | None] = mapped_column(String(width.URL))
    author: Mapped[str | None] = mapped_column(String(width.NAME))
    published: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The trusted date the issue window is judged by: published, else updated; None if neither.
    date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    # Seen on its feed's first successful poll: backlog, never "late" news.
    from_first_poll: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str] = mapped_column(Text, default="")
    words: Mapped[int | None] = mapped_column(Integer)
    # The feed gives only a teaser: the reading time comes from the post's page, counted once
    # (page_words; 0 when the page could not be read, None while not yet fetched).
    teaser: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    page_words: Mapped[int | None] = mapped_column(Integer)
    # The entry's categories, and its links to other hosts as canonical URLs, one a line.
    categories: Mapped[str | None] = mapped_column(Text)
    links: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(width.HASH))
    # The one issue this post went into (the ledger that stops it going out twice).
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"))


class Fetch(Base):
    """A record of one request for a feed (pruned to the last days)."""

    __tablename__ = "fetches"
    __table_args__ = (
        Index("ix_fetches_feed_at", "feed_id", "at"),
        Index("ix_fetches_at", "at"),  # the prune of fetches older than two weeks
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    url: Mapped[str] = mapped_column(String(width.URL))
    status_code: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[FetchOutcome] = mapped_column(StatusText(FetchOutcome))
    new_posts: Mapped[int] = mapped_column(Integer, default=0)
    updated_posts: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class Issue(Base):
    __tablename__ = "issues"
    # /metrics counts issues by status: without it the count reads every issue's HTML.
    __table_args__ = (Index("ix_issues_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    subject: Mapped[str] = mapped_column(Text)
    # The web version (no personal links).
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    post_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[IssueStatus] = mapped_column(
        StatusText(IssueStatus), default=IssueStatus.RECORDED
    )
    # The titles of the week's picks, a JSON list (the archive shows them).
    pick_titles: Mapped[str | None] = mapped_column(Text)
    # The curator's intro (`digest intro`, inline Markdown), kept with the issue it opened.
    intro: Mapped[str | None] = mapped_column(Text)


class Curation(Base):
    """`digest pick URL [--note TEXT]` / `digest skip URL`: pending (issue_id None) until an
    issue is recorded, then that issue's."""

    __tablename__ = "curations"
    __table_args__ = (Index("ix_curations_issue_url", "issue_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(width.URL))  # canonical, as posts.canonical_url
    verdict: Mapped[Verdict] = mapped_column(StatusText(Verdict))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)  # under a pick, inline Markdown
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))


class Subscriber(Base):
    __tablename__ = "subscribers"
    # The hourly prune of sign-ups left unconfirmed; and /metrics and `digest status` count
    # subscribers by status from this index alone (0.4 ms at 10,000 readers against 1.6-6.9 ms
    # reading the table, bench/scrape.py's database).
    __table_args__ = (Index("ix_subscribers_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(width.EMAIL), unique=True)
    name: Mapped[str | None] = mapped_column(String(width.PERSON))
    status: Mapped[SubscriberStatus] = mapped_column(
        StatusText(SubscriberStatus), default=SubscriberStatus.ACTIVE
    )
    # Comma-separated section keys; None: every section.
    sections: Mapped[str | None] = mapped_column(String(width.SECTIONS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    # The consent record: how they came, and when and from where they confirmed by email.
    # (created_at is when they came; for a pending sign-up, its latest attempt.)
    source: Mapped[ConsentSource | None] = mapped_column(StatusText(ConsentSource))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirm_ip: Mapped[str | None] = mapped_column(String(width.IP))


class SubscriberEvent(Base):
    """One change in a subscriber's record (sign-up, confirmation, sections, leaving), with
    its time and the request's address when a reader made it: their history, for export."""

    __tablename__ = "subscriber_events"
    __table_args__ = (Index("ix_subscriber_events_at", "subscriber_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[EventKind] = mapped_column(StatusText(EventKind))
    detail: Mapped[str | None] = mapped_column(String(width.EVENT))
    ip: Mapped[str | None] = mapped_column(String(width.IP))


class Forgotten(Base):
    """An address erased at its owner's request, as a keyed hash only: an import skips it,
    and only the owner's own confirmation brings it back."""

    __tablename__ = "forgotten"

    digest: Mapped[str] = mapped_column(String(width.HASH), primary_key=True)
    forgotten_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(Base):
    """One (issue, subscriber) pair: the send log that makes `digest send` resumable."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_delivery"),
        # Neither database indexes a foreign key by itself: without this, deleting one
        # subscriber scans every delivery for its cascade (1,000 stale sign-ups took 394.6 s
        # at 2.6M rows); a bounce's latest issue reads it newest first.
        Index("ix_deliveries_subscriber_sent", "subscriber_id", "sent_at"),
        Index("ix_deliveries_message_id", "message_id"),  # a webhook's report (37 ms scan)
        # A send's pending rows, an issue's counts by status: read from the index alone.
        Index("ix_deliveries_issue_status", "issue_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(
        StatusText(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(width.MESSAGE_ID))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IssueCounts(Base):
    """An issue's deliveries by status and its bounces and complaints, kept as they happen
    (in the transaction that changes a delivery or stores an event), so /metrics and
    `digest status` read a row, not the whole log; and what is left of the log once
    delivery.keep_log has passed and its rows are folded away (``folded_at``)."""

    __tablename__ = "issue_counts"

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    pending: Mapped[int] = mapped_column(Integer, default=0)
    sending: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    # Subscribers who bounced or complained (refusals while sending are the failed ones).
    hard: Mapped[int] = mapped_column(Integer, default=0)
    soft: Mapped[int] = mapped_column(Integer, default=0)
    complaints: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    folded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Count(Base):
    """A running total kept as the work happens (posts stored), for /metrics."""

    __tablename__ = "counts"

    name: Mapped[str] = mapped_column(String(width.META_KEY), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class BounceEvent(Base):
    """A bounce or complaint heard back about a subscriber (an inbox, a webhook), kept."""

    __tablename__ = "bounce_events"
    __table_args__ = (
        # A report read twice (a fetch that died before moving it, a webhook sent again)
        # counts once.
        UniqueConstraint("source_id", "subscriber_id", name="uq_bounce_events_source"),
        Index("ix_bounce_events_subscriber", "subscriber_id", "at"),
        Index("ix_bounce_events_issue", "issue_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id", ondelete="SET NULL"))
    kind: Mapped[BounceKind] = mapped_column(StatusText(BounceKind))
    source: Mapped[str] = mapped_column(String(width.STATUS))  # imap, ses, postmark
    source_id: Mapped[str] = mapped_column(String(width.HASH))
    status_code: Mapped[str | None] = mapped_column(String(width.STATUS))  # 5.1.1, abuse
    diagnostic: Mapped[str] = mapped_column(Text, default="")


class Meta(Base):
    """Small key/value state: the generated secret key, the daemon lock, schedule state."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(width.META_KEY), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The same tables for Core statements (the poll's bulk reads and writes).
FEEDS = cast(Table, Feed.__table__)
POSTS = cast(Table, Post.__table__)
FETCHES = cast(Table, Fetch.__table__)
ISSUE_COUNTS = cast(Table, IssueCounts.__table__)
COUNTS = cast(Table, Count.__table__)
