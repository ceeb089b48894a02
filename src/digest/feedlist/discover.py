"""Feed discovery: from a blog's home page to its feed URL (alternate links, then common paths).

Every GET goes through ingest's fetch: the network policy, the size cap counted as the body is
decompressed, and feeds.timeout as a deadline for the whole request (a home page that drips a
byte a second costs feeds.timeout, not minutes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

from digest.config import FeedsSettings
from digest.errors import FetchError
from digest.ingest.fetch import ACCEPT, fetch_as_configured, make_client
from digest.ingest.slots import politely
from digest.ingest.transport import RefusedAddressError

log = logging.getLogger(__name__)

FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
    "application/rdf+xml",
    "application/xml",
    "text/xml",
)
COMMON_PATHS = ("feed", "rss.xml", "atom.xml", "index.xml", "feed.xml", "feed/", "rss/")
FEED_ROOTS = {"rss", "feed", "rdf"}

HOME_MAX_BYTES = 2_000_000  # the <head> is what matters; a huge home page is cut here
FEED_SNIFF_BYTES = 64_000  # enough to see the root element of a feed
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
WORKERS = 8  # home pages looked at at once (and feeds.per_host per site)


@dataclass(frozen=True)
class _Site:
    url: str


@dataclass(frozen=True)
class Discovered:
    """What discovery found for each home page: its feed (None: none found), and for a site
    without one whose requests the network policy refused, the refusal (not "no feed")."""

    feeds: dict[str, str | None]
    refused: dict[str, str]

    def why_not(self, site: str) -> str:
        """Why ``site`` has no feed, in words."""
        refusal = self.refused.get(site)
        return f"no feed found: the network policy {refusal}" if refusal else "no feed found"


def discover_sites(sites: Iterable[str], feeds: FeedsSettings) -> Discovered:
    """The feed of each blog home page (None where none was found), several at once."""
    return asyncio.run(discover_all(sites, feeds))


async def discover_all(sites: Iterable[str], feeds: FeedsSettings) -> Discovered:
    async with make_client(feeds) as client:

        async def one(site: _Site) -> tuple[str, str | None, str | None]:
            refusals: list[str] = []
            feed = await discover_feed(client, site.url, feeds, refusals)
            return site.url, feed, (refusals[0] if refusals and feed is None else None)

        unique = [_Site(url) for url in dict.fromkeys(sites)]
        found = await politely(unique, one, per_host=feeds.per_host, total=WORKERS)
    return Discovered(
        {site: feed for site, feed, _ in found},
        {site: why for site, _, why in found if why is not None},
    )


async def discover_feed(
    client: httpx.AsyncClient,
    home_url: str,
    feeds: FeedsSettings,
    refusals: list[str] | None = None,
) -> str | None:
    """The feed of the blog at home_url, or None when none of the candidates is a feed; each
    request the network policy refused is added to ``refusals``, in words."""
    refusals = [] if refusals is None else refusals
    page = await _get(client, home_url, feeds, HOME_MAX_BYTES, HTML_ACCEPT, refusals)
    candidates: list[str] = []
    if page is not None:
        final_url, body = page
        if looks_like_feed(body):
            return final_url  # the "home page" was the feed itself
        candidates += alternate_links(body.decode("utf-8", "replace"), final_url)
    candidates += common_feed_urls(home_url)
    tried: set[str] = set()
    for url in candidates:
        if url in tried:
            continue
        tried.add(url)
        got = await _get(client, url, feeds, FEED_SNIFF_BYTES, ACCEPT, refusals)
        if got is not None and looks_like_feed(got[1]):
            return got[0]  # after redirects, so polls don't pay for them every time
    return None


def alternate_links(html: str, base_url: str) -> list[str]:
    """Absolute URLs of the page's <link rel="alternate"> feeds, comment feeds last."""
    finder = _LinkFinder()
    try:
        finder.feed(html)
        finder.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    base = (_join(base_url, finder.base) if finder.base else None) or base_url
    links = [(title, _join(base, href)) for title, href in finder.links]
    links.sort(key=lambda link: "comment" in link[0].lower())
    return [url for _title, url in links if url]


def common_feed_urls(home_url: str) -> list[str]:
    """Where blogs usually keep their feed: next to the home page, then at the site root."""
    try:
        parts = urlsplit(home_url)
    except ValueError:
        return []
    root = f"{parts.scheme}://{parts.netloc}/"
    path = parts.path or "/"
    if not path.endswith("/") and "." not in path.rsplit("/", 1)[-1]:
        path += "/"  # https://x/blog means the folder /blog/, not /
    folder = urljoin(root, path.rsplit("/", 1)[0] + "/")
    bases = [folder] if folder == root else [folder, root]
    return [urljoin(base, path) for base in bases for path in COMMON_PATHS]


def looks_like_feed(body: bytes) -> bool:
    """True for RSS, Atom, RDF and JSON Feed documents, judged by content (never by URL)."""
    head = body[:FEED_SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return _is_json_feed(body)
    text = head.decode("utf-8", "replace")
    text = _PROLOG.sub("", text)
    match = re.match(r"\s*<([A-Za-z_][\w.:-]*)", text)
    return match is not None and match.group(1).rsplit(":", 1)[-1].lower() in FEED_ROOTS


_PROLOG = re.compile(r"^(\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>))*", re.S | re.I)


def _join(base: str, href: str) -> str | None:
    """href made absolute, if it is a valid http(s) URL."""
    try:
        url = urljoin(base, href.strip())
        return url if urlsplit(url).scheme in ("http", "https") else None
    except ValueError:  # e.g. an unbalanced IPv6 bracket in a hostile href
        return None


def _is_json_feed(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and str(data.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    )


async def _get(
    client: httpx.AsyncClient,
    url: str,
    feeds: FeedsSettings,
    keep: int,
    accept: str,
    refusals: list[str],
) -> tuple[str, bytes] | None:
    """(final URL, the first ``keep`` bytes of the body) of a 2xx answer, else None (and a
    refusal of the network policy added to ``refusals``)."""
    try:
        fetched = await fetch_as_configured(client, url, feeds, accept=accept)
    except FetchError as e:
        log.info("discover: %s: %s", url, e.message)
        if isinstance(e.__cause__, RefusedAddressError):
            refusals.append(e.message)
        return None
    if fetched.body is None or not 200 <= fetched.status_code < 300:
        log.debug("discover: %s answered %s", url, fetched.status_code)
        return None
    return fetched.final_url, fetched.body[:keep]


class _LinkFinder(HTMLParser):
    """Collects <link rel=alternate> feed links and <base href>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): value or "" for name, value in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"].strip()
        if tag != "link" or not values.get("href"):
            return
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").lower().split(";")[0].strip()
        if "alternate" in rels and kind in FEED_TYPES:
            self.links.append((values.get("title", ""), values["href"]))

    handle_startendtag = handle_starttag
