"""The schema's tables (digest.tables) as SQLAlchemy 2 typed ORM classes, for the commands
that work with objects (issues, subscribers, deliveries); what each column holds is said in
digest.tables, where the schema is declared once. The poll uses the tables with Core only and
never imports this module.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped

from digest.tables import (
    BOUNCE_EVENTS,
    CURATIONS,
    DELIVERIES,
    FORGOTTEN,
    ISSUES,
    META,
    METADATA,
    SUBSCRIBER_EVENTS,
    SUBSCRIBERS,
)

# Re-exported: the modules that use the ORM classes import these from here too.
from digest.tables import COUNTS as COUNTS
from digest.tables import FEEDS as FEEDS
from digest.tables import FETCHES as FETCHES
from digest.tables import ISSUE_COUNTS as ISSUE_COUNTS
from digest.tables import POSTED as POSTED
from digest.tables import POSTS as POSTS
from digest.tables import StatusText as StatusText
from digest.tables import UTCDateTime as UTCDateTime
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


class Base(DeclarativeBase):
    metadata = METADATA


class Feed(Base):
    __table__ = FEEDS

    id: Mapped[int]
    source_url: Mapped[str]
    url: Mapped[str]
    title: Mapped[str | None]
    site_url: Mapped[str | None]
    category: Mapped[str | None]
    section: Mapped[str]
    active: Mapped[bool]
    added_at: Mapped[datetime]
    etag: Mapped[str | None]
    last_modified: Mapped[str | None]
    body_hash: Mapped[str | None]
    status: Mapped[FeedStatus]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None]
    last_warning: Mapped[str | None]
    error_count: Mapped[int]
    failing_since: Mapped[datetime | None]
    last_fetched_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    next_fetch_at: Mapped[datetime | None]
    polled_once: Mapped[bool]
    rule_skip: Mapped[str | None]
    rule_section: Mapped[str | None]
    rule_section_if: Mapped[str | None]


class Post(Base):
    __table__ = POSTS

    id: Mapped[int]
    feed_id: Mapped[int]
    key: Mapped[str]
    title: Mapped[str]
    link: Mapped[str | None]
    canonical_url: Mapped[str | None]
    author: Mapped[str | None]
    published: Mapped[datetime | None]
    updated: Mapped[datetime | None]
    date: Mapped[datetime | None]
    first_seen: Mapped[datetime]
    from_first_poll: Mapped[bool]
    text: Mapped[str]
    words: Mapped[int | None]
    teaser: Mapped[bool]
    page_words: Mapped[int | None]
    categories: Mapped[str | None]
    links: Mapped[str | None]
    content_hash: Mapped[str]
    issue_id: Mapped[int | None]


class Fetch(Base):
    __table__ = FETCHES

    id: Mapped[int]
    feed_id: Mapped[int]
    at: Mapped[datetime]
    url: Mapped[str]
    status_code: Mapped[int | None]
    outcome: Mapped[FetchOutcome]
    new_posts: Mapped[int]
    updated_posts: Mapped[int]
    bytes: Mapped[int]
    elapsed_ms: Mapped[int]
    error: Mapped[str | None]


class Issue(Base):
    __table__ = ISSUES

    id: Mapped[int]
    number: Mapped[int]
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    created_at: Mapped[datetime]
    subject: Mapped[str]
    html: Mapped[str]
    text: Mapped[str]
    post_count: Mapped[int]
    status: Mapped[IssueStatus]
    pick_titles: Mapped[str | None]
    intro: Mapped[str | None]


class Curation(Base):
    __table__ = CURATIONS

    id: Mapped[int]
    url: Mapped[str]
    verdict: Mapped[Verdict]
    created_at: Mapped[datetime]
    note: Mapped[str | None]
    issue_id: Mapped[int | None]


class Subscriber(Base):
    __table__ = SUBSCRIBERS

    id: Mapped[int]
    email: Mapped[str]
    name: Mapped[str | None]
    status: Mapped[SubscriberStatus]
    sections: Mapped[str | None]
    created_at: Mapped[datetime]
    unsubscribed_at: Mapped[datetime | None]
    hard_bounces: Mapped[int]
    source: Mapped[ConsentSource | None]
    confirmed_at: Mapped[datetime | None]
    confirm_ip: Mapped[str | None]


class SubscriberEvent(Base):
    __table__ = SUBSCRIBER_EVENTS

    id: Mapped[int]
    subscriber_id: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[EventKind]
    detail: Mapped[str | None]
    ip: Mapped[str | None]


class Forgotten(Base):
    __table__ = FORGOTTEN

    digest: Mapped[str]
    forgotten_at: Mapped[datetime]


class Delivery(Base):
    __table__ = DELIVERIES

    id: Mapped[int]
    issue_id: Mapped[int]
    subscriber_id: Mapped[int]
    status: Mapped[DeliveryStatus]
    attempts: Mapped[int]
    last_error: Mapped[str | None]
    message_id: Mapped[str | None]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class IssueCounts(Base):
    __table__ = ISSUE_COUNTS

    issue_id: Mapped[int]
    pending: Mapped[int]
    sending: Mapped[int]
    sent: Mapped[int]
    failed: Mapped[int]
    skipped: Mapped[int]
    hard: Mapped[int]
    soft: Mapped[int]
    complaints: Mapped[int]
    last_sent_at: Mapped[datetime | None]
    folded_at: Mapped[datetime | None]


class Count(Base):
    __table__ = COUNTS

    name: Mapped[str]
    n: Mapped[int]


class BounceEvent(Base):
    __table__ = BOUNCE_EVENTS

    id: Mapped[int]
    at: Mapped[datetime]
    subscriber_id: Mapped[int]
    issue_id: Mapped[int | None]
    kind: Mapped[BounceKind]
    source: Mapped[str]
    source_id: Mapped[str]
    status_code: Mapped[str | None]
    diagnostic: Mapped[str]


class Meta(Base):
    __table__ = META

    key: Mapped[str]
    value: Mapped[str]
    updated_at: Mapped[datetime]
