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
    entries = Entries(site)

    def feed_endpoint(request: Request) -> Response:
        carried = feed_entries(site.db, site.settings.web.feed_issues)
        key = ("feed", tuple(carried))
        headers = {**HEADERS, "Cache-Control": "public, max-age=900"}
        build = partial(atom_feed, site, carried, entries)
        return site.feed_answers.answer(request, key, build, MEDIA_TYPE, headers)

    return [Route("/feed.xml", feed_endpoint, methods=["GET"])]


class Entries:
    """Each issue's <entry> as XML, by number, kept for the issues the feed carries: the next
    issue costs one lxml parse and one entry written, not 20 (at 260 issues the feed's rebuild
    after a new issue took 64 ms with every entry made again, 500 ms cold, under load 18)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.by_number: dict[int, bytes] = {}  # encoded once: 2 MB joined, not re-encoded

    def of(self, carried: list[FeedEntry]) -> list[bytes]:
        known = {e.number: self.by_number[e.number] for e in carried if e.number in self.by_number}
        missing = [e for e in carried if e.number not in known]
        html = web_versions(self.site.db, self.site.settings, [e.number for e in missing])
        base = self.site.settings.newsletter.base_url.rstrip("/")
        for issue in missing:
            known[issue.number] = entry_xml(base, issue, body_of(html.get(issue.number, "")))
        self.by_number = known  # a plain swap: concurrent builders each keep a whole dict
        return [known[e.number] for e in carried]


def atom_feed(site: Site, carried: list[FeedEntry], entries: Entries | None = None) -> bytes:
    """The feed document of ``carried`` (newest first), UTF-8."""
    base = site.settings.newsletter.base_url.rstrip("/")
    title = site.settings.newsletter.title
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "title", title)
    _add(feed, "subtitle", f"Every issue of {title}, a weekly digest of blogs.")
    _add(feed, "id", f"{base}/")
    _add(feed, "updated", _stamp(carried[0].created_at if carried else datetime(2000, 1, 1)))
    _add(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    _add(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    author = _add(feed, "author")
    _add(author, "name", title)
    _add(feed, "generator", "digest")
    head = ET.tostring(feed, encoding="unicode").removesuffix("</feed>")
    body = b"".join((entries or Entries(site)).of(carried))
    return f'<?xml version="1.0" encoding="utf-8"?>\n{head}'.encode() + body + b"</feed>"


def entry_xml(base: str, issue: FeedEntry, content: str) -> bytes:
    """One <entry>, in the feed's default namespace (it is written inside <feed>)."""
    url = f"{base}/issues/{issue.number}"
    entry = ET.Element("entry")
    _add(entry, "title", issue.subject, namespace="")
    _add(entry, "id", url, namespace="")
    _add(entry, "published", _stamp(issue.created_at), namespace="")
    _add(entry, "updated", _stamp(issue.created_at), namespace="")
    _add(entry, "link", rel="alternate", type="text/html", href=url, namespace="")
    _add(entry, "content", content, type="html", namespace="")
    return ET.tostring(entry, encoding="unicode").encode()


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


def _add(
    parent: ET.Element, tag: str, text: str | None = None, namespace: str = ATOM, **attrs: str
) -> ET.Element:
    element = ET.SubElement(parent, f"{{{namespace}}}{tag}" if namespace else tag, attrs)
    element.text = text
    return element


def _stamp(when: datetime) -> str:
    moment = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
