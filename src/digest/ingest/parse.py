"""Feed bytes → FeedData: feedparser for the forgiving parse, then our own normalisation.

feedparser's HTML sanitiser and URI resolver are turned off: they are most of its run time,
and we never store HTML — only plain text made by ``text.html_to_text``, which drops scripts.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import feedparser

from digest.errors import ParseError
from digest.text import cut_at_word, feed_text, one_line, word_count
from digest.types import FeedData, PostData
from digest.urls import normalize_link

TEXT_LIMIT = 3000  # characters of plain text kept per post; excerpts need far fewer
MARKUP_READ = 12_000  # characters of a body's markup turned into text: enough for TEXT_LIMIT
# An entry with no content element and a summary shorter than this is a teaser (Hugo's and
# hand-made feeds: 70-360 words for essays of thousands); full posts in <description> run longer.
TEASER_WORDS = 400
_TAG = re.compile(r"<[^>]*>")
TITLE_FROM_TEXT = 80  # characters of an untitled entry's text that make its title
CATEGORIES_KEPT = 30  # Simon Willison's entries carry 1-11; more is a tag cloud
CATEGORY_CHARS = 100
LINKS_KEPT = 50  # links to other hosts kept per post (eatonphil.com's posts: 44 on average)
# Case-sensitive: re.I costs re its literal search for "href", 14x the time on real feeds.
_ABSOLUTE_HREF = re.compile(r"""href\s*=\s*["'](https?://([^/:?#"'<>\s]+)[^"'<>\s]{0,2000})["']""")
OLDEST_TRUSTED = datetime(1990, 1, 1, tzinfo=UTC)
# A date ahead of the clock is kept (its post waits for its week, as the README says) up to
# this far; further ahead it is taken for a mistake (a year 2099, a day and month swapped).
FUTURE_TRUSTED = timedelta(days=30)
_XML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s+(?=<)")
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
_CLOSED_ROOT = re.compile(rb"</(?:[\w-]+:)?(?:rss|feed|rdf|RDF)\s*>\s*$")
_DECLARED_ENCODING = re.compile(rb"""^(<\?xml[^>]*?encoding\s*=\s*["'])[^"']*""", re.I)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_YEAR = re.compile(r"\b(\d{4})\b")
_EMAIL_NAME = re.compile(r"^\s*\S+@\S+\s*\((.+)\)\s*$")
_EMAIL = re.compile(r"^\s*\S+@\S+\.\S+\s*$")
_DROPPED_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


def parse_feed(
    body: bytes, url: str, headers: Mapping[str, str] | None = None, *, now: datetime
) -> FeedData:
    """Parse one feed document; ParseError (one readable line) when it is not a usable feed."""
    if not body or not body.strip():
        raise ParseError(url, "empty body: not a feed")
    body = _XML_START.sub(b"", _utf16_to_utf8(body), count=1)
    if _HTML_START.match(body[:2048]):
        raise ParseError(url, "not a feed: got an HTML page")
    # httpx has already decoded the body: a Content-Encoding header would mislead feedparser.
    clean_headers = {
        k.lower(): v for k, v in (headers or {}).items() if k.lower() not in _DROPPED_HEADERS
    }
    parsed = feedparser.parse(
        body, response_headers=clean_headers, sanitize_html=False, resolve_relative_uris=False
    )
    warning = _check(parsed, body, url)
    feed = parsed.feed
    site = normalize_link(feed.get("link"), url)
    base = site or url
    feed_author = _author(feed)
    posts = tuple(
        post for entry in parsed.entries if (post := _post(entry, base, now, feed_author))
    )
    title = _title(feed) or None
    return FeedData(title=title, site_url=site, posts=posts, warning=warning)


def _utf16_to_utf8(body: bytes) -> bytes:
    """UTF-16 with a byte order mark as UTF-8: the mark decides (XML 1.0 F.1), yet feedparser
    trusts a missing or wrong declaration over it."""
    if not body.startswith(_UTF16_BOMS):
        return body
    try:
        text = body.decode("utf-16")
    except UnicodeDecodeError:
        return body
    return _DECLARED_ENCODING.sub(rb"\1utf-8", text.encode("utf-8").lstrip(), count=1)


def _check(parsed: Any, body: bytes, url: str) -> str | None:
    """Refuse what is not a feed; return feedparser's complaint when it still read entries."""
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    message = one_line(str(problem)) if problem else ""
    if not parsed.get("version") and not parsed.entries:
        if problem:
            raise ParseError(url, f"not a feed: malformed XML ({message})")
        raise ParseError(url, "not a feed: no RSS, Atom or RDF document found")
    if problem is not None and isinstance(problem, _not_well_formed()):
        if not _CLOSED_ROOT.search(body[-512:]):
            raise ParseError(url, f"malformed XML: the document is cut short ({message})")
        if not parsed.entries:
            raise ParseError(url, f"malformed XML: {message}")
    return message or None


def _not_well_formed() -> tuple[type[BaseException], ...]:
    import xml.sax

    return (xml.sax.SAXException,)


def _post(entry: Any, base: str, now: datetime, feed_author: str | None) -> PostData | None:
    """The entry normalised; None for an empty one (what a broken document leaves behind)."""
    link = _entry_link(entry, base)
    text, words = _entry_text(entry)
    title = _title(entry)
    guid = one_line(entry.get("id", "") or "")
    if not (title or link or text or guid):
        return None
    if not title:
        # An untitled note (microblogs, Blogger) is known by its opening line.
        first_line = text.split("\n", 1)[0]
        title = cut_at_word(one_line(first_line), TITLE_FROM_TEXT) or "(untitled)"
    published = _trusted_date(entry, "published", now)
    updated = _trusted_date(entry, "updated", now)
    categories = _categories(entry)
    shown = "\0".join([title, link or "", text, *categories])
    digest = hashlib.sha256(shown.encode()).hexdigest()
    key = guid or link or f"sha256:{digest}"
    return PostData(
        key=key[:2000],
        title=title[:1000],
        link=link,
        # An Atom entry without an author has its feed's (RFC 4287 4.2.1); RSS readers agree.
        author=_author(entry) or feed_author,
        published=published,
        updated=updated,
        text=text,
        content_hash=digest,
        words=words,
        teaser=not entry.get("content") and words < TEASER_WORDS,
        categories=categories,
        links=_outbound_links(entry, link or base),
    )


def _entry_link(entry: Any, base: str) -> str | None:
    entry_base = base
    for detail in (entry.get("content") or []) + [entry.get("summary_detail") or {}]:
        if detail.get("base"):
            entry_base = detail["base"]
            break
    candidates = [
        link.get("href")
        for link in entry.get("links", [])
        if link.get("rel", "alternate") == "alternate" and "html" in link.get("type", "text/html")
    ]
    for candidate in [*candidates, entry.get("link")]:
        link = normalize_link(candidate, entry_base)
        if link:
            return link
    # RSS guids with isPermaLink are links too.
    if entry.get("guidislink"):
        return normalize_link(entry.get("id"), entry_base)
    return None


def _categories(entry: Any) -> tuple[str, ...]:
    names = (one_line(tag.get("term") or tag.get("label") or "") for tag in entry.get("tags", []))
    kept = dict.fromkeys(name[:CATEGORY_CHARS] for name in names if name)
    return tuple(kept)[:CATEGORIES_KEPT]


def _outbound_links(entry: Any, page: str) -> tuple[str, ...]:
    """Absolute links of the entry's bodies to hosts other than its own page's (made canonical
    by the worker: one URL parse per link, which is most of this step's cost)."""
    own = (urlsplit(page).hostname or "").removeprefix("www.")
    found: dict[str, None] = {}
    for value in _bodies(entry):
        # A relative link stays on the blog's own host: only absolute ones are looked at.
        for href, host in _ABSOLUTE_HREF.findall(value):
            if host.lower().removeprefix("www.") != own and href not in found:
                found[html.unescape(href)] = None
                if len(found) >= LINKS_KEPT:
                    return tuple(found)
    return tuple(found)


def _bodies(entry: Any) -> list[str]:
    return [c.get("value", "") or "" for c in entry.get("content") or []] + [
        entry.get("summary", "") or ""
    ]


def _title(element: Any) -> str:
    detail = element.get("title_detail") or {}
    return one_line(feed_text(element.get("title", "") or "", detail.get("type")))


def _entry_text(entry: Any) -> tuple[str, int]:
    """Plain text (up to TEXT_LIMIT) of the fullest body the entry has, its longest content
    else its summary, and the word count of the whole body (for reading time)."""
    bodies = [(c.get("value", "") or "", c.get("type")) for c in entry.get("content") or []]
    summary = entry.get("summary_detail") or {}
    bodies.append((entry.get("summary", "") or "", summary.get("type")))
    value, content_type = max(bodies, key=lambda body: len(body[0]))
    if len(value) <= MARKUP_READ:
        full = feed_text(value, content_type, article=True)
        return cut_at_word(full, TEXT_LIMIT), word_count(full)
    # A long post: its text is made from the head of the markup only (an lxml parse of the
    # whole was a quarter of a cold poll's CPU), and its words counted between the tags.
    head = value[:MARKUP_READ]
    tag = head.rfind("<")
    head = head[:tag] if tag > MARKUP_READ // 2 else head
    text = cut_at_word(feed_text(head, content_type, article=True), TEXT_LIMIT)
    plain = content_type and "html" not in content_type.lower()
    return text, word_count(value if plain else _TAG.sub(" ", value))


def _trusted_date(entry: Any, name: str, now: datetime) -> datetime | None:
    # dict.get, not entry.get: feedparser's own get() swaps updated and published when one
    # is missing (with a DeprecationWarning); we want what the feed actually said.
    struct = dict.get(entry, f"{name}_parsed")
    if not struct:
        return None
    raw = dict.get(entry, name) or ""
    year = _YEAR.search(raw)
    # Some parsers read year 0001 as 2001; the raw text says what the feed meant.
    if year and int(year.group(1)) < OLDEST_TRUSTED.year:
        return None
    try:
        value = datetime.fromtimestamp(calendar.timegm(struct), UTC)
    except (OverflowError, ValueError, OSError):
        return None
    if value < OLDEST_TRUSTED or value > now + FUTURE_TRUSTED:
        return None
    return value


def _author(entry: Any) -> str | None:
    detail = entry.get("author_detail") or {}
    name = detail.get("name") or entry.get("author") or ""
    name = one_line(feed_text(name, "text/html" if "<" in name else "text/plain"))
    match = _EMAIL_NAME.match(name)
    if match:
        name = match.group(1).strip()
    if not name or _EMAIL.match(name) or name.lower() in ("unknown", "noreply"):
        return None
    return name[:200]
