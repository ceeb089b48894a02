"""Small feed and OPML documents for the polling tests, built in code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

BASE_DATE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    guid: str
    title: str
    link: str
    text: str = "Some words about systems."
    date: datetime = BASE_DATE


def items(n: int, site: str = "https://blog.example", start: int = 0) -> list[Item]:
    """``n`` distinct items, newest first."""
    return [
        Item(
            guid=f"{site}/posts/{k}",
            title=f"Post {k}",
            link=f"{site}/posts/{k}.html",
            text=f"Body of post {k}.",
            date=BASE_DATE + timedelta(hours=k),
        )
        for k in range(start + n - 1, start - 1, -1)
    ]


def rss(
    entries: Sequence[Item] | int, title: str = "Test blog", site: str = "https://blog.example"
) -> bytes:
    """An RSS 2.0 document with the given items (or that many generated ones)."""
    its = items(entries, site) if isinstance(entries, int) else entries
    body = "".join(
        f"<item><title>{escape(i.title)}</title><link>{escape(i.link)}</link>"
        f'<guid isPermaLink="false">{escape(i.guid)}</guid>'
        f"<pubDate>{format_datetime(i.date)}</pubDate>"
        f"<description>{escape(i.text)}</description></item>"
        for i in its
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>{escape(site)}/</link>"
        f"<description>test</description>{body}</channel></rss>"
    ).encode()


def atom(
    entries: Sequence[Item] | int, title: str = "Atom blog", site: str = "https://atom.example"
) -> bytes:
    """An Atom document with the given entries."""
    its = items(entries, site) if isinstance(entries, int) else entries
    body = "".join(
        f"<entry><title>{escape(i.title)}</title><link href={quoteattr(i.link)}/>"
        f"<id>{escape(i.guid)}</id><updated>{i.date.isoformat()}</updated>"
        f"<summary>{escape(i.text)}</summary></entry>"
        for i in its
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>{escape(site)}/</id>"
        f'<link href="{escape(site)}/"/><updated>{BASE_DATE.isoformat()}</updated>{body}</feed>'
    ).encode()


def opml(feeds: Iterable[tuple[str, str, str]]) -> bytes:
    """An OPML file of (folder, title, url), grouped by folder."""
    folders: dict[str, list[tuple[str, str]]] = {}
    for folder, title, url in feeds:
        folders.setdefault(folder, []).append((title, url))
    outlines = "".join(
        f"<outline text={quoteattr(folder)}>"
        + "".join(
            f'<outline type="rss" text={quoteattr(t)} title={quoteattr(t)} xmlUrl={quoteattr(u)}/>'
            for t, u in entries
        )
        + "</outline>"
        for folder, entries in folders.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0"><head><title>t</title>'
        f"</head><body>{outlines}</body></opml>"
    ).encode()


def write_opml(path: Path, feeds: Iterable[tuple[str, str, str]]) -> Path:
    path.write_bytes(opml(feeds))
    return path
