"""The archive as an Atom feed (GET /feed.xml): the newest finished issues, each with its web
version as content, for feed readers (digest's own `digest poll` among them).

Finished: sent, or recorded while sending is off (the archive shows those too); an issue still
going out waits until it has reached every subscriber. The newest web.feed_issues of them.
Pollers ask by ETag or date and are answered from the entries' numbers alone
(web/conditional.py); the document is built once per set of entries.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from functools import partial

import lxml.html
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.issue.archive import FeedEntry, feed_entries, web_versions
from digest.web.site import HEADERS, Site

ATOM = "http://www.w3.org/2005/Atom"
MEDIA_TYPE = "application/atom+xml; charset=utf-8"

ET.register_namespace("", ATOM)


def routes(site: Site) -> list[Route]:
    contents = Contents()

    def feed_endpoint(request: Request) -> Response:
        entries = feed_entries(site.db, site.settings.web.feed_issues)
        key = ("feed", tuple(entries))
        headers = {**HEADERS, "Cache-Control": "public, max-age=900"}
        build = partial(atom_feed, site, entries, contents)
        return site.feed_answers.answer(request, key, build, MEDIA_TYPE, headers)

    return [Route("/feed.xml", feed_endpoint, methods=["GET"])]


class Contents:
    """The entries' content (body_of their web version) by issue number, kept for the issues
    the feed carries: a new issue costs one lxml parse, not one per entry (20 x 3-7 ms)."""

    def __init__(self) -> None:
        self.by_number: dict[int, str] = {}

    def of(self, site: Site, numbers: list[int]) -> dict[int, str]:
        known = {n: self.by_number[n] for n in numbers if n in self.by_number}
        missing = [n for n in numbers if n not in known]
        for number, html in web_versions(site.db, site.settings, missing).items():
            known[number] = body_of(html)
        self.by_number = known  # a plain swap: concurrent builders each keep a whole dict
        return known


def atom_feed(site: Site, entries: list[FeedEntry], contents: Contents | None = None) -> bytes:
    """The feed document of ``entries`` (newest first), UTF-8."""
    base = site.settings.newsletter.base_url.rstrip("/")
    title = site.settings.newsletter.title
    content = (contents or Contents()).of(site, [e.number for e in entries])
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "title", title)
    _add(feed, "subtitle", f"Every issue of {title}, a weekly digest of blogs.")
    _add(feed, "id", f"{base}/")
    _add(feed, "updated", _stamp(entries[0].created_at if entries else datetime(2000, 1, 1)))
    _add(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    _add(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    author = _add(feed, "author")
    _add(author, "name", title)
    _add(feed, "generator", "digest")
    for issue in entries:
        entry = _add(feed, "entry")
        url = f"{base}/issues/{issue.number}"
        _add(entry, "title", issue.subject)
        _add(entry, "id", url)
        _add(entry, "published", _stamp(issue.created_at))
        _add(entry, "updated", _stamp(issue.created_at))
        _add(entry, "link", rel="alternate", type="text/html", href=url)
        _add(entry, "content", content.get(issue.number, ""), type="html")
    document = ET.tostring(feed, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + document).encode("utf-8")


def body_of(html: str) -> str:
    """The issue's body as a fragment a feed reader shows: no <head> or <style> (readers drop
    them and their text would show), no hidden preheader (readers drop its style, not it)."""
    if not html.strip():
        return ""
    doc = lxml.html.document_fromstring(html)
    body = doc.find("body")
    if body is None:
        return html
    for hidden in body.xpath(".//*[contains(@style, 'display:none')]"):
        hidden.drop_tree()
    inner = [body.text or ""] + [lxml.html.tostring(child, encoding="unicode") for child in body]
    return "".join(inner).strip()


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    element.text = text
    return element


def _stamp(when: datetime) -> str:
    moment = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
