"""Immutable records passed between layers, named by where the data comes from or goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Section keys; OPML group names map onto them (see section_for below).
ML = "ml"
SYSTEMS = "systems"
OTHER = "other"
SECTION_TITLES = {ML: "Machine Learning", SYSTEMS: "Systems", OTHER: "Other"}
SECTION_ORDER = (ML, SYSTEMS, OTHER)


@dataclass(frozen=True)
class FeedSource:
    """A feed as the OPML file (or a blog list) names it: what to poll."""

    url: str
    title: str | None = None
    site_url: str | None = None
    category: str | None = None  # the OPML folder path, e.g. "ML" or "Tech/Blogs"
    extra: tuple[tuple[str, str], ...] = ()  # other outline attributes, kept for round trips


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


@dataclass(frozen=True)
class FeedData:
    """A parsed feed: its metadata and its entries."""

    title: str | None
    site_url: str | None
    posts: tuple[PostData, ...] = ()
    warning: str | None = None  # feedparser's bozo message when it still got entries


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
    retry_after: datetime | None = None
    elapsed_ms: int = 0

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


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
    words: int = 0  # length of the whole post, for reading time


# Rendered once per section choice; each subscriber's copy replaces this with their own link.
UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/__DIGEST_TOKEN__"


@dataclass(frozen=True)
class RenderedEmail:
    """One issue rendered for one section choice: subject, inlined HTML, plain text."""

    subject: str
    html: str
    text: str
    preheader: str = ""

    def personal(self, unsubscribe_url: str) -> RenderedEmail:
        return RenderedEmail(
            self.subject,
            self.html.replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url),
            self.text.replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url),
            self.preheader,
        )
