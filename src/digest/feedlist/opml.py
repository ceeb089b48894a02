"""OPML in and out: any feed reader's OPML to FeedSource records, and those back to OPML 2.0."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from digest.errors import ConfigError
from digest.feedlist.rules import ATTRIBUTES, rule_attributes, rules_from_attributes
from digest.types import FeedRules, FeedSource

# How an outline's rules are read: checked as they are (the feed list's own files), or set
# aside (an imported list's: feedlist/remote.py).
RulesReader = Callable[[Mapping[str, str], str], FeedRules]

log = logging.getLogger(__name__)

# Attributes that map onto FeedSource fields; every other outline attribute goes to `extra`.
_XML_URL, _HTML_URL, _TITLE, _TEXT, _TYPE, _CATEGORY = (
    "xmlUrl",
    "htmlUrl",
    "title",
    "text",
    "type",
    "category",
)
_CORE = {name.lower(): name for name in (_XML_URL, _HTML_URL, _TITLE, _TEXT)}


def _parser() -> etree.XMLParser:
    # No entity expansion, no DTD loading, no network, no huge trees: hostile files stay inert.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_opml(
    data: bytes, origin: str = "OPML", read_rules: RulesReader = rules_from_attributes
) -> list[FeedSource]:
    """The feeds of an OPML document, each once, with its folder path as category, and
    their rules as ``read_rules`` has them."""
    root = _parse_xml(data, origin)
    if _local(root.tag) != "opml":
        raise ConfigError(f"{origin}: not an OPML file (the root element is <{_local(root.tag)}>)")
    body = next((child for child in root if _local(child.tag) == "body"), None)
    if body is None:
        return []
    sources: list[FeedSource] = []
    seen: set[str] = set()
    for source in _walk(body, (), origin, read_rules):
        if source.url not in seen:
            seen.add(source.url)
            sources.append(source)
    return sources


def read_opml(path: Path) -> list[FeedSource]:
    """The feeds of the OPML file at path (the `feeds.opml` setting)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"feeds.opml: {path} does not exist (create it with `digest opml build` or "
            "`digest opml import FILE`, or point the feeds.opml setting elsewhere)"
        ) from None
    except OSError as e:
        raise ConfigError(f"feeds.opml: cannot read {path}: {e.strerror}") from e
    return parse_opml(data, origin=str(path))


def write_opml(sources: Iterable[FeedSource], title: str = "digest feeds") -> bytes:
    """OPML 2.0 with one folder outline per category level, in order of first appearance."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    tree = _Folder()
    for source in sources:
        tree.add(_category_path(source.category), source)
    tree.emit(body)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def merge_sources(
    existing: Iterable[FeedSource], added: Iterable[FeedSource]
) -> tuple[list[FeedSource], int]:
    """existing, then the added feeds it lacks (existing entries win); and how many were added."""
    merged = list(existing)
    seen = {source.url for source in merged}
    count = 0
    for source in added:
        if source.url not in seen:
            seen.add(source.url)
            merged.append(source)
            count += 1
    return merged, count


def _parse_xml(data: bytes, origin: str) -> etree._Element:
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise ConfigError(f"{origin}: not valid XML: {_one_line(str(e))}") from None
    if root is None:
        raise ConfigError(f"{origin}: empty document")
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        # OPML never needs entities; declaring them is how billion-laughs and XXE files work.
        raise ConfigError(f"{origin}: declares XML entities, which an OPML file has no use for")
    return root


def _walk(
    node: etree._Element, folders: tuple[str, ...], origin: str, read_rules: RulesReader
) -> Iterable[FeedSource]:
    for outline in node:
        if not isinstance(outline.tag, str) or _local(outline.tag) != "outline":
            continue
        attrs = _attributes(outline)
        url = attrs.get(_XML_URL, "").strip()
        if url:
            source = _source(url, attrs, folders, origin, read_rules)
            if source is not None:
                yield source
            yield from _walk(outline, folders, origin, read_rules)
        else:
            name = (attrs.get(_TEXT) or attrs.get(_TITLE) or "").strip()
            yield from _walk(outline, (*folders, name) if name else folders, origin, read_rules)


def _source(
    url: str, attrs: dict[str, str], folders: tuple[str, ...], origin: str, read_rules: RulesReader
) -> FeedSource | None:
    http_url = _http_url(url)
    if http_url is None:
        log.warning("%s: skipped feed %r: its xmlUrl is not an http(s) URL", origin, url)
        return None
    title = (attrs.get(_TITLE) or "").strip() or (attrs.get(_TEXT) or "").strip() or None
    ignored = (_XML_URL, _HTML_URL, _TITLE, _TEXT, *ATTRIBUTES)
    extra = {k: v for k, v in attrs.items() if k not in ignored}
    text = attrs.get(_TEXT)
    if text is not None and text.strip() and text.strip() != title:
        extra[_TEXT] = text  # a reader that shows `text` and `title` differently keeps both
    if extra.get(_TYPE, "").lower() == "rss":
        del extra[_TYPE]  # the writer's default
    category = "/".join(folders) if folders else _first_category(attrs.get(_CATEGORY, ""))
    return FeedSource(
        url=http_url,
        title=title,
        site_url=(attrs.get(_HTML_URL) or "").strip() or None,
        category=category,
        extra=tuple(sorted(extra.items())),
        rules=read_rules(attrs, f"{origin}: feed {http_url}"),
    )


def _attributes(outline: etree._Element) -> dict[str, str]:
    # Readers disagree on case (xmlurl, XMLURL); the core names are matched case-insensitively.
    attrs: dict[str, str] = {}
    for key, value in outline.attrib.items():
        name = str(key)
        attrs[_CORE.get(name.lower(), name)] = str(value)
    return attrs


def _http_url(url: str) -> str | None:
    lowered = url.lower()
    if lowered.startswith(("http://", "https://")):
        return url
    # feed:// and feed:https:// are browser-era aliases for http(s).
    if lowered.startswith(("feed:https://", "feed:http://")):
        return url[5:]
    if lowered.startswith("feed://"):
        return "http://" + url[7:]
    return None


def _first_category(value: str) -> str | None:
    for part in value.split(","):
        path = "/".join(p.strip() for p in part.strip().strip("/").split("/") if p.strip())
        if path:
            return path
    return None


def _category_path(category: str | None) -> tuple[str, ...]:
    if not category:
        return ()
    return tuple(p.strip() for p in category.split("/") if p.strip())


@dataclass
class _Folder:
    """A folder of the OPML tree being written: feeds and subfolders in first-seen order."""

    items: list[FeedSource | tuple[str, _Folder]] = field(default_factory=list)
    folders: dict[str, _Folder] = field(default_factory=dict)

    def add(self, path: tuple[str, ...], source: FeedSource) -> None:
        if not path:
            self.items.append(source)
            return
        name = path[0]
        if name not in self.folders:
            self.folders[name] = _Folder()
            self.items.append((name, self.folders[name]))
        self.folders[name].add(path[1:], source)

    def emit(self, parent: etree._Element) -> None:
        for item in self.items:
            if isinstance(item, FeedSource):
                parent.append(_outline(item))
            else:
                name, folder = item
                element = etree.SubElement(parent, "outline", text=name, title=name)
                folder.emit(element)


def _outline(source: FeedSource) -> etree._Element:
    extra = dict(source.extra)
    attrs = {
        _TYPE: extra.pop(_TYPE, "rss"),
        _TEXT: extra.pop(_TEXT, source.title or ""),
    }
    if source.title:
        attrs[_TITLE] = source.title
    attrs[_XML_URL] = source.url
    if source.site_url:
        attrs[_HTML_URL] = source.site_url
    attrs.update(rule_attributes(source.rules))
    element = etree.Element("outline")
    for key, value in [*attrs.items(), *sorted(extra.items())]:
        element.set(key, value)
    return element


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _one_line(text: str) -> str:
    # lxml appends "(<string>, line N)", which names no file the user knows.
    return re.sub(r"\s*\(<string>, line \d+\)$", "", " ".join(text.split()))
