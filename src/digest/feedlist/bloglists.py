"""The hand-edited blog lists (lists/*.md): parse them and turn them into FeedSource records."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from digest.errors import ConfigError
from digest.feedlist.rules import CLAUSE, parse_rules
from digest.types import FeedRules, FeedSource

log = logging.getLogger(__name__)

ENTRY_FORMAT = "- [Name](https://site/) — feed: https://site/feed.xml"

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^[-*+]\s+")
_ENTRY = re.compile(
    r"^[-*+]\s+\[(?P<name>(?:[^\]\\]|\\.)+)\]\(\s*<?(?P<site>[^\s()<>]+)>?\s*\)(?P<rest>.*)$"
)
_FEEDS = re.compile(r"\bfeeds?\s*:(?P<urls>.*)$", re.I)
_URL = re.compile(r"<?(https?://[^\s,<>]+)>?")


@dataclass(frozen=True)
class BlogEntry:
    """One blog of a list: who, where, in which section, and its pinned feeds if any."""

    name: str
    site: str
    section: str  # the heading path it sits under, e.g. "ML" or "Systems/Databases"
    feeds: tuple[str, ...] = ()  # pinned feed URLs; empty means "discover it"
    rules: FeedRules = FeedRules()  # `— skip: "…"`, `— section: …` (feedlist/rules.py)
    notes: tuple[str, ...] = ()
    origin: str = ""  # file:line, for messages


def parse_list(text: str, origin: str = "list") -> list[BlogEntry]:
    """The entries of one markdown list; `## Heading` names the section of the bullets below it."""
    entries: list[BlogEntry] = []
    headings: list[str] = []
    current: _Draft | None = None
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{origin}:{number}"
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if current is not None and line[:1] in (" ", "\t") and line.strip():
            current.notes.append(line.strip())
            continue
        if current is not None:
            entries.append(current.entry())
            current = None
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            if level >= 2:  # `#` is the file's title; `##` a section, `###` a subsection
                headings = [*headings[: level - 2], heading.group(2)]
            continue
        if headings and _BULLET.match(line):  # above the first `##` is free text
            current = _start_entry(line, headings, where)
    if current is not None:
        entries.append(current.entry())
    return entries


def read_lists(folder: Path) -> list[BlogEntry]:
    """The entries of every *.md file in folder, files in name order."""
    if not folder.is_dir():
        raise ConfigError(f"blog lists: {folder} is not a folder")
    files = sorted(folder.glob("*.md"))
    if not files:
        raise ConfigError(f"blog lists: no *.md file in {folder}")
    entries: list[BlogEntry] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"blog lists: cannot read {path}: {e}") from e
        entries += parse_list(text, origin=str(path))
    return entries


def build_sources(
    entries: Iterable[BlogEntry],
    discover: Callable[[str], str | None],
) -> tuple[list[FeedSource], list[str]]:
    """The entries' feeds (pinned, else discovered), each once, and the blogs left without one."""
    entries = list(entries)
    to_discover = list(dict.fromkeys(e.site for e in entries if not e.feeds))
    found = {site: discover(site) for site in to_discover}
    sources: list[FeedSource] = []
    unresolved: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        urls = entry.feeds or tuple(url for url in [found[entry.site]] if url)
        if not urls:
            unresolved.append(f"{entry.name} ({entry.site})")
            continue
        for url in urls:
            if url in seen:
                log.warning("%s: feed %s is already listed; skipped", entry.origin, url)
                continue
            seen.add(url)
            sources.append(_source(entry, url, several=len(urls) > 1))
    return sources, unresolved


def _source(entry: BlogEntry, url: str, several: bool) -> FeedSource:
    # Two feeds of one blog need telling apart in a reader: "Name (host)".
    title = f"{entry.name} ({urlsplit(url).hostname})" if several else entry.name
    return FeedSource(
        url=url, title=title, site_url=entry.site, category=entry.section, rules=entry.rules
    )


@dataclass
class _Draft:
    """An entry being read: its bullet line is parsed, its note lines may follow."""

    entry_without_notes: BlogEntry
    notes: list[str] = field(default_factory=list)

    def entry(self) -> BlogEntry:
        return replace(self.entry_without_notes, notes=tuple(self.notes))


def _start_entry(line: str, headings: list[str], where: str) -> _Draft:
    match = _ENTRY.match(line.strip())
    if not match:
        raise ConfigError(f"{where}: a list entry looks like `{ENTRY_FORMAT}`, got: {line.strip()}")
    site = match.group("site")
    if not _is_http(site):
        raise ConfigError(f"{where}: the site must be an http(s) URL, got {site}")
    feeds: list[str] = []
    rest = match.group("rest")
    first_rule = CLAUSE.search(rest)
    rules = parse_rules(rest[first_rule.start() :], where) if first_rule else FeedRules()
    clause = _FEEDS.search(rest[: first_rule.start()] if first_rule else rest)
    if clause:
        feeds = _URL.findall(clause.group("urls"))
        if not feeds:
            raise ConfigError(f"{where}: `feed:` is followed by no http(s) URL")
    entry = BlogEntry(
        name=re.sub(r"\\(.)", r"\1", match.group("name")).strip(),
        site=site,
        section="/".join(headings),
        feeds=tuple(dict.fromkeys(feeds)),
        rules=rules,
        origin=where,
    )
    return _Draft(entry)


def _is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@dataclass(frozen=True)
class ListedFeeds:
    """What the feeds file holds after a build from the lists, and what changed in it."""

    sources: list[FeedSource]
    kept: list[FeedSource]  # a listed blog whose feed was not found now: its outline stays
    unlisted: list[FeedSource]  # outlines no list names: kept (--keep-unlisted) or removed
    keep_unlisted: bool

    @property
    def removed(self) -> list[FeedSource]:
        return [] if self.keep_unlisted else self.unlisted


def follow_lists(
    built: list[FeedSource],
    unfound_sites: Iterable[str],
    existing: Iterable[FeedSource],
    *,
    keep_unlisted: bool = False,
) -> ListedFeeds:
    """The lists are the source of truth: the feeds they name (``built``), plus the outline in
    the file of each listed blog whose feed was not found this time (``unfound_sites``: a
    site that did not answer keeps its feed); outlines no list names are dropped, or kept
    last with ``keep_unlisted`` (feeds added by hand or by `opml import`)."""
    listed = {source.url for source in built}
    unfound = {_site_key(site) for site in unfound_sites}
    kept: list[FeedSource] = []
    unlisted: list[FeedSource] = []
    for source in existing:
        if source.url in listed:
            continue
        if source.site_url and _site_key(source.site_url) in unfound:
            kept.append(source)
        else:
            unlisted.append(source)
    sources = built + kept + (unlisted if keep_unlisted else [])
    return ListedFeeds(sources, kept, unlisted, keep_unlisted)


def _site_key(url: str) -> str:
    return url.strip().rstrip("/").lower()
