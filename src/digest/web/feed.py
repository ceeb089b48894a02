"""The archive as an Atom feed (GET /feed.xml): the newest finished issues, each with its web
version as content, for feed readers (digest's own `digest poll` among them).

Finished: sent, or recorded while sending is off (the archive shows those too); an issue still
going out waits until it has reached every subscriber. An ETag lets pollers ask politely.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import lxml.html
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.issue.plan import web_version
from digest.models import Issue
from digest.types import IssueStatus
from digest.web.site import HEADERS, Site

ATOM = "http://www.w3.org/2005/Atom"
ENTRIES = 20  # each carries a whole issue (up to 90 KB): 20 keep the feed under 2 MB
FINISHED = (IssueStatus.SENT, IssueStatus.SKIPPED)
MEDIA_TYPE = "application/atom+xml; charset=utf-8"

ET.register_namespace("", ATOM)


def routes(site: Site) -> list[Route]:
    def feed_endpoint(request: Request) -> Response:
        body = atom_feed(site)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {**HEADERS, "ETag": etag, "Cache-Control": "public, max-age=900"}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=MEDIA_TYPE, headers=headers)

    return [Route("/feed.xml", feed_endpoint, methods=["GET"])]


def atom_feed(site: Site) -> bytes:
    """The feed document, UTF-8."""
    base = site.settings.newsletter.base_url.rstrip("/")
    title = site.settings.newsletter.title
    with site.db.session() as s:
        issues = s.execute(
            select(Issue.number, Issue.subject, Issue.created_at)
            .where(Issue.status.in_(FINISHED))
            .order_by(Issue.number.desc())
            .limit(ENTRIES)
        ).all()
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "title", title)
    _add(feed, "subtitle", f"Every issue of {title}, a weekly digest of blogs.")
    _add(feed, "id", f"{base}/")
    _add(feed, "updated", _stamp(issues[0].created_at if issues else datetime(2000, 1, 1)))
    _add(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    _add(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    author = _add(feed, "author")
    _add(author, "name", title)
    _add(feed, "generator", "digest")
    for number, subject, created_at in issues:
        entry = _add(feed, "entry")
        url = f"{base}/issues/{number}"
        _add(entry, "title", subject)
        _add(entry, "id", url)
        _add(entry, "published", _stamp(created_at))
        _add(entry, "updated", _stamp(created_at))
        _add(entry, "link", rel="alternate", type="text/html", href=url)
        html = web_version(site.db, site.settings, number) or ""
        _add(entry, "content", body_of(html), type="html")
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
