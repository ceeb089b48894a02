"""Immutable records and status types passed between layers, named by where the data comes
from or goes (as reader keeps its _types.py).

    the feed list  -> FeedSource           -> storage (feedsync)
    storage        -> FeedJob              -> the network (poll)
    the network    -> FetchedFeed          -> the poll
    the parser     -> FeedData / PostData  -> the parser worker
    parser worker  -> ParsedFeed, PostRow  -> storage (feedstore)
    the poll       -> Outcome, FeedResult  -> the policy and storage
    storage        -> StoredPost           -> the issue (compose, render)
    the issue      -> RenderedEmail        -> delivery (message, mail)
    an inbox, a webhook -> BounceReport    -> bounces (apply)

Statuses are StrEnums: each value is the string stored in its column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

# --- statuses ------------------------------------------------------------------------------


class FeedStatus(StrEnum):
    """A feed's health (Feed.status), as the policy decides it after each fetch."""

    NEW = "new"  # not fetched yet
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"
    GONE = "gone"  # 410: never fetched again
    BACKOFF = "backoff"  # the server asked us to wait (429, or 503 with Retry-After)


class FetchOutcome(StrEnum):
    """What one request for a feed came to (Fetch.outcome), for the fetch history."""

    NEW = "new"  # a changed body, parsed
    NOT_MODIFIED = "not_modified"  # 304
    UNCHANGED = "unchanged"  # 200 with the body we already had
    ERROR = "error"


class IssueStatus(StrEnum):
    """Where a recorded issue stands (Issue.status)."""

    RECORDED = "recorded"  # built; deliveries not all done
    SENT = "sent"  # every delivery done
    SKIPPED = "skipped"  # sending is off: recorded only


class DeliveryStatus(StrEnum):
    """One (issue, subscriber) row of the delivery log (Delivery.status)."""

    PENDING = "pending"
    SENDING = "sending"  # claimed and committed before SMTP sees the message
    SENT = "sent"
    FAILED = "failed"  # a 5xx for this recipient
    SKIPPED = "skipped"  # no longer active, or their sections are empty this week


class Verdict(StrEnum):
    """A curator's word on one post for the coming issue (Curation.verdict)."""

    PICK = "pick"  # among the week's picks, whatever its score
    SKIP = "skip"  # never a pick, and last in its section


class SubscriberStatus(StrEnum):
    """Whether we mail an address (Subscriber.status)."""

    PENDING = "pending"  # signed up, not yet confirmed: never mailed but the confirmation
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"  # pressed "spam": never mailed again, not even by import


class BounceKind(StrEnum):
    """What an inbox told us about one message (BounceEvent.kind)."""

    HARD = "hard"  # the address is dead: bounced at once
    SOFT = "soft"  # full, delayed, blocked for now: bounced after bounces.soft_limit
    COMPLAINT = "complaint"  # a spam report (RFC 5965 ARF, a sending service's complaint)


# --- from an inbox or a webhook to bounces ------------------------------------------------


@dataclass(frozen=True)
class BounceReport:
    """What one bounce, complaint or auto-reply says, before it is matched to a subscriber.

    ``kind`` None: nothing to act on; ``ignored`` tells an auto-reply (handled, dropped) from a
    message nobody could read (left where it is).
    """

    kind: BounceKind | None
    note: str  # why: "5.1.1", "abuse report", "auto-reply", "not a bounce"
    recipients: tuple[str, ...] = ()  # the failed (or complaining) addresses, lower case
    diagnostic: str = ""  # the server's words, one line
    message_id: str | None = None  # the Message-ID of our message, when quoted
    addressed_to: tuple[str, ...] = ()  # where the report was sent: a VERP address, maybe
    ignored: bool = False
    at: datetime | None = None  # when the service saw it (webhooks); None: when we read it


# --- sections ------------------------------------------------------------------------------

# Section keys; OPML group names map onto them (see section_for below).
ML = "ml"
SYSTEMS = "systems"
OTHER = "other"
SECTION_TITLES = {ML: "Machine Learning", SYSTEMS: "Systems", OTHER: "Other"}
SECTION_ORDER = (ML, SYSTEMS, OTHER)


def section_for(category: str | None) -> str:
    """The issue section of a feed from its OPML folder (or category) name."""
    if not category:
        return OTHER
    for part in reversed([p.strip().lower() for p in category.replace(",", "/").split("/")]):
        if part in ("ml", "machine learning", "ai", "ml/ai", "machine-learning", "deep learning"):
            return ML
        if part in ("systems", "system", "sys", "distributed systems", "databases"):
            return SYSTEMS
    return OTHER


# --- from the feed list --------------------------------------------------------------------


@dataclass(frozen=True)
class FeedRules:
    """A list entry's rules for its posts, carried through the OPML file into the feeds table
    and applied when an issue is planned (issue/rules.py)."""

    skip: str | None = None  # regex: a post whose title or a category matches is never shown
    section: str | None = None  # section key for the feed's posts
    section_if: str | None = None  # regex: only posts with a matching category move to section

    def __bool__(self) -> bool:
        return bool(self.skip or self.section)


@dataclass(frozen=True)
class FeedSource:
    """A feed as the OPML file (or a blog list) names it: what to poll."""

    url: str
    title: str | None = None
    site_url: str | None = None
    category: str | None = None  # the OPML folder path, e.g. "ML" or "Tech/Blogs"
    extra: tuple[tuple[str, str], ...] = ()  # other outline attributes, kept for round trips
    rules: FeedRules = FeedRules()


# --- to and from the network ---------------------------------------------------------------


@dataclass(frozen=True)
class FeedJob:
    """A snapshot of what fetching one feed needs, taken before the poll starts."""

    feed_id: int
    url: str
    etag: str | None
    last_modified: str | None
    body_hash: str | None


@dataclass(frozen=True)
class FetchedFeed:
    """What one HTTP request for a feed brought back."""

    url: str  # the URL requested
    status_code: int
    final_url: str  # after redirects
    permanent_redirect: str | None = None  # new URL to store after a 301/308
    body: bytes | None = None  # None on 304
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    retry_after: str | None = None  # the Retry-After header as sent (the policy reads it)
    elapsed_ms: int = 0

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


# --- from the parser -----------------------------------------------------------------------


@dataclass(frozen=True)
class PostData:
    """One entry as it comes from a parsed feed, normalised, going to storage."""

    key: str  # stable identity within the feed: id, else link, else a content hash
    title: str
    link: str | None  # absolute, normalised
    author: str | None
    published: datetime | None  # UTC; None when missing or not trusted
    updated: datetime | None  # UTC; None when missing or not trusted
    text: str  # plain text for excerpts (clean, no markup)
    content_hash: str  # changes when the entry's visible content changes
    words: int = 0  # length of the whole entry, for reading time (text may be cut)
    teaser: bool = False  # only a summary, no content: the post's page has the real length
    categories: tuple[str, ...] = ()  # the entry's tags (feed rules match them)
    links: tuple[str, ...] = ()  # absolute links in its body to other hosts (the picks count them)


@dataclass(frozen=True)
class FeedData:
    """A parsed feed: its metadata and its entries."""

    title: str | None
    site_url: str | None
    posts: tuple[PostData, ...] = ()
    warning: str | None = None  # feedparser's bozo message when it still got entries


class PostRow(NamedTuple):
    """A post's stored values, fitted to the columns: each field is the posts column of that
    name, so a new column is one field here (and its value in worker.post_row). Made by the
    parser workers, written by the store (feedstore). A NamedTuple pickles almost as a plain
    tuple does: unpickling a 50-post feed costs the poll's process 73-76 us against 45-48 us
    (0.14 s over a cold poll of 5,000 feeds)."""

    key: str
    title: str
    link: str | None
    canonical_url: str | None
    author: str | None
    published: datetime | None
    updated: datetime | None
    date: datetime | None  # published, else updated
    text: str
    words: int
    teaser: bool
    categories: str | None  # one per line
    links: str | None  # canonical, one per line
    content_hash: str


@dataclass(frozen=True)
class ParsedFeed:
    """A parsed feed as the store needs it: names fitted to the columns, one row per post."""

    title: str | None
    site_url: str | None
    rows: tuple[PostRow, ...]
    warning: str | None = None  # the parser's complaint about a body it could still read


# --- from the poll to the policy and storage ------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one fetch of a feed came to, as the policy needs it."""

    status: FeedStatus  # OK, NOT_MODIFIED, ERROR or GONE
    status_code: int | None = None
    error: str | None = None
    retry_after: datetime | None = None


@dataclass(frozen=True)
class FeedResult:
    """One feed's fetch, classified and (when its body changed) parsed, ready to store."""

    job: FeedJob
    outcome: Outcome
    fetch_outcome: FetchOutcome
    fetched: FetchedFeed | None = None
    data: ParsedFeed | None = None
    body_hash: str | None = None
    nbytes: int = 0  # size of the body; the body itself is dropped once hashed or parsed


# --- from storage to the issue, and on to mail ---------------------------------------------


@dataclass(frozen=True)
class StoredPost:
    """A post read from storage with what an issue needs of its feed, for composing."""

    id: int
    feed_id: int
    feed_title: str
    feed_site_url: str | None
    section: str
    title: str
    link: str | None
    canonical_url: str | None
    author: str | None
    date: datetime | None  # trusted published/updated, UTC
    first_seen: datetime
    from_first_poll: bool
    text: str
    words: int | None = 0  # length of the whole post; None: unknown (a teaser, page not read)


# Rendered once per section choice; each subscriber's copy replaces these with their own links.
UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/__DIGEST_TOKEN__"
PREFERENCES_PLACEHOLDER = "https://preferences.invalid/__DIGEST_TOKEN__"


@dataclass(frozen=True)
class RenderedEmail:
    """One issue rendered for one section choice: subject, inlined HTML, plain text."""

    subject: str
    html: str
    text: str
    preheader: str = ""

    def personal(self, unsubscribe_url: str, preferences_url: str) -> RenderedEmail:
        def own(body: str) -> str:
            body = body.replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url)
            return body.replace(PREFERENCES_PLACEHOLDER, preferences_url)

        return RenderedEmail(self.subject, own(self.html), own(self.text), self.preheader)


# --- readers' consent ----------------------------------------------------------------------


class ConsentSource(StrEnum):
    """How a subscriber came (Subscriber.source); None for those added before it was kept."""

    WEB = "web"  # the sign-up form, then the emailed confirmation
    CLI = "cli"  # `digest subscribers add` (the operator vouches, or --confirm sent a link)
    IMPORT = "import"  # `digest subscribers import`


class EventKind(StrEnum):
    """One change in a subscriber's record (SubscriberEvent.kind), kept with its time."""

    SIGNED_UP = "signed_up"  # the form was sent for this address
    CONFIRM_SENT = "confirm_sent"  # a confirmation email was queued
    REMINDER_SENT = "reminder_sent"  # an active address signed up again: its links, mailed
    CONFIRMED = "confirmed"
    ADDED = "added"  # by the operator
    IMPORTED = "imported"
    SECTIONS = "sections"  # detail: the new choice
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"
