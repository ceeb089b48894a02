"""Plain text from feed HTML: markup, scripts and entities out; a post's prose; reading time."""

from __future__ import annotations

import html
import html.entities
import math
import re
from collections.abc import Callable
from typing import Any

import lxml.etree

# Elements whose content is never reading matter.
_DROP = (
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "head",
    "form",
    "button",
    "select",
    "textarea",
)
_BLOCK = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "blockquote",
        "tr",
        "table",
        "section",
        "article",
        "figure",
        "figcaption",
        "hr",
        "dd",
        "dt",
        "header",
        "footer",
        "aside",
        "details",
        "summary",
    }
)
# A line break goes before every block tag, opening or closing, so that blocks never run
# together in the text; _tidy folds the extra breaks.
_BLOCK_NAMES = "|".join(sorted(_BLOCK, key=len, reverse=True))
_BLOCK_TAG = re.compile(rf"<(?=/?(?:{_BLOCK_NAMES})\b)", re.IGNORECASE)
# Comments and processing instructions go at parse time, in C: the text is made without
# walking the tree in Python (that walk and regex passes were a quarter of a parse).
# huge_tree: tag soup nests every unclosed tag, and libxml2 drops whatever lies deeper than
# 256 levels without it (2,048 with it; deeper still takes the crude path below).
_PARSER = lxml.etree.HTMLParser(
    remove_comments=True, remove_pis=True, no_network=True, huge_tree=True
)
_TAGLIKE = re.compile(r"<[^>]{0,200}>")
_DROP_NAMES = "|".join(_DROP)
_DROPPED_CRUDELY = re.compile(
    rf"<!--.*?(?:-->|\Z)|<({_DROP_NAMES})\b[^>]*>.*?(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL
)
# Text that, once parsed, still opens with one of these tags was escaped twice (Atom
# type="text/html", double-escaped RSS). Anything else with "<" is the author's text: Vec<T>.
_ESCAPED_MARKUP = re.compile(
    r"^\s*<(?:p|div|span|a|img|br|hr|h[1-6]|ul|ol|li|em|strong|b|i|figure|section|article|"
    r"blockquote|pre|code|table|script|style|iframe)\b[^>]{0,200}>",
    re.IGNORECASE,
)
# feedparser's forgiving parser turns a bare "R&D" into "R&D;": an entity nobody defined.
_UNKNOWN_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]{0,31});")
WORDS_PER_MINUTE = 230
# Invisible format characters (Unicode category Cf) that can only mislead in a title, a name or
# an excerpt: bidi overrides and isolates (U+202E turns "txt.exe" into "exe.txt"), marks, soft
# hyphens, word joiners, BOMs, annotation marks, language tags. Kept: the joiners inside a word
# or an emoji (ZWJ, ZWNJ), the tags of a flag (U+1F3F4 ...), and the prepended marks scripts
# need (U+0600-0605 and such). tests/test_text.py checks this against unicodedata.
_INVISIBLE = re.compile(
    r"[\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    r"\ufff9-\ufffb\U000e0001]"
    r"|(?<![\U0001f3f4\U000e0020-\U000e007f])[\U000e0020-\U000e007f]+"
    r"|(?<!\S)[\u200c\u200d]+|[\u200c\u200d]+(?!\S)"
)
_MAYBE_INVISIBLE = re.compile(
    r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    r"\U000e0001-\U000e007f]"
)
# A web page's furniture around its article: menus, banners, footers, sidebars.
_FURNITURE = ("nav", "header", "footer", "aside")
# What a post's body holds besides its prose, which an excerpt must never start with (seen in
# real feeds: al-folio's <h2>Introduction</h2> and <d-footnote>, Substack's captioned images
# and Subscribe/Share buttons, Hugo's <nav id="TableOfContents">, footnote markers).
_NOT_PROSE = (
    *(f"h{level}" for level in range(1, 7)),
    "figure",
    "figcaption",
    *_FURNITURE,
    "d-footnote",
    "d-cite",
    "d-contents",
    "d-byline",
    "d-front-matter",
    "d-appendix",
)
# A code block's line in a post's text starts with this (a private-use character, never in
# prose): an excerpt never opens with code (issue/excerpts.py). Its words still count.
CODE_MARK = "\ue000"
_QUOTES = ("“", '"', "‘", "«", "„", "'")
_FURNITURE_WORDS = frozenset({"share", "sharing", "button", "buttons", "toc", "social"})
_FURNITURE_PREFIXES = ("subscri", "caption", "footnote", "sharedaddy")
FURNITURE_CHARS = 300  # Substack's subscribe widget, caption and all: 105 characters
_CLASS_WORD = re.compile(r"[\s_-]+")
_MARKED = lxml.etree.XPath("//*[@class or @id] | //sup[.//a[starts-with(@href, '#')]]")
_LINKED_LISTS = lxml.etree.XPath("//ul[.//a] | //ol[.//a]")


def html_to_text(
    markup: str, *, limit: int | None = None, article: bool = False, _unescaped: bool = False
) -> str:
    """Readable text of an HTML fragment; never leaves markup or entities behind.

    ``article``: a post's body, read for its prose (see _strip_furniture): line breaks of the
    source are spaces, so each line of the text is one block of the post.
    """
    if not markup or not markup.strip():
        return ""
    if "<" not in markup and "&" not in markup:
        return _tidy(markup, limit)
    if article:
        markup = markup.replace("\r", " ").replace("\n", " ")
    try:
        root = lxml.etree.fromstring(_BLOCK_TAG.sub("\n<", markup), _PARSER)
    except (lxml.etree.LxmlError, ValueError):
        root = None
    text = ""
    if root is not None:
        lxml.etree.strip_elements(root, *_DROP, with_tail=False)
        if article:
            text = _prose(root)
        if not text.strip():
            text = lxml.etree.tostring(root, method="text", encoding="unicode")
    if not text.strip():
        # Unparseable, or nested past libxml2's limit: strip the tags by pattern instead
        # (yields nothing either when the markup holds no text, e.g. only a comment).
        return _tidy(html.unescape(_TAGLIKE.sub(" ", _DROPPED_CRUDELY.sub(" ", markup))), limit)
    # Markup escaped twice must not leak through as tags in the text.
    if not _unescaped and _ESCAPED_MARKUP.match(text):
        return html_to_text(text, limit=limit, article=article, _unescaped=True)
    return _tidy(text, limit)


def _prose(root: lxml.etree._Element) -> str:
    """The text of a post's body without its headings, figures, tables of contents, share and
    subscribe furniture and footnote markers."""
    lxml.etree.strip_elements(root, *_NOT_PROSE, with_tail=False)
    marked: list[lxml.etree._Element] = _MARKED(root)
    if marked:
        # A wrapper named like furniture ("post toc-enabled") holds most of the post: kept.
        most = max(FURNITURE_CHARS, len(_text_of(root)) // 2)
        for element in marked:
            if (element.tag == "sup" or _is_furniture(element)) and len(_text_of(element)) < most:
                _remove(element)
    lists: list[lxml.etree._Element] = _LINKED_LISTS(root)
    for listing in lists:
        if _is_contents(listing):
            _remove(listing)
    _mark_code(root)
    _quote(root)
    return _text_of(root)


def _mark_code(root: lxml.etree._Element) -> None:
    """Each code block (a <pre>, or a paragraph that is only <code>) opens with CODE_MARK."""
    for block in root.iter("pre", "p"):
        children = list(block)
        only_code = (
            block.tag == "p"
            and len(children) == 1
            and children[0].tag == "code"
            and not (block.text or "").strip()
            and not (children[0].tail or "").strip()
        )
        if block.tag == "pre" or only_code:
            block.text = CODE_MARK + (block.text or "")


def _quote(root: lxml.etree._Element) -> None:
    """A block quotation's text gets its quotation marks (“…”), unless it has its own: in a
    post's text it would read as the author's words."""
    for quote in root.iter("blockquote"):
        if any(a.tag == "blockquote" for a in quote.iterancestors()):
            continue
        texts = [t for t in quote.xpath(".//text()") if t.strip()]
        if not texts or texts[0].lstrip().startswith(_QUOTES):
            continue
        _edit_text(texts[0], lambda t: "“" + t.lstrip())
        _edit_text(texts[-1], lambda t: t.rstrip() + "”")


def _edit_text(node: Any, change: Callable[[str], str]) -> None:
    """Change one text node lxml handed out (an element's text, or its tail)."""
    parent = node.getparent()
    if node.is_tail:
        parent.tail = change(parent.tail or "")
    else:
        parent.text = change(parent.text or "")


def _text_of(element: lxml.etree._Element) -> str:
    return lxml.etree.tostring(element, method="text", encoding="unicode")


def _is_furniture(element: lxml.etree._Element) -> bool:
    names = f"{element.get('class', '')} {element.get('id', '')}".lower()
    if "table-of-contents" in names or "tableofcontents" in names:
        return True
    return any(
        word in _FURNITURE_WORDS or word.startswith(_FURNITURE_PREFIXES)
        for word in _CLASS_WORD.split(names)
    )


def _is_contents(listing: lxml.etree._Element) -> bool:
    """A list of links into the page itself: a table of contents."""
    links = list(listing.iter("a"))
    if len(links) < 2 or not all(a.get("href", "").startswith("#") for a in links):
        return False
    linked = sum(_letters(_text_of(a)) for a in links)
    return linked >= 0.8 * _letters(_text_of(listing))


def _letters(text: str) -> int:
    return len("".join(text.split()))


def _remove(element: lxml.etree._Element) -> None:
    """Take ``element`` out of the tree, keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def plain_to_text(text: str, *, limit: int | None = None) -> str:
    """Tidy text a feed marked as plain: entities decoded (feeds escape twice), nothing parsed."""
    if not text or not text.strip():
        return ""
    return _tidy(text, limit)


def feed_text(
    value: str, content_type: str | None, *, limit: int | None = None, article: bool = False
) -> str:
    """Readable text of a feed text construct, by its declared type (html, xhtml or plain);
    ``article`` for a post's body (see html_to_text)."""
    if content_type and "html" not in content_type.lower():
        return plain_to_text(value, limit=limit)
    return html_to_text(value, limit=limit, article=article)


def _tidy(text: str, limit: int | None) -> str:
    """Entities decoded, each run of spaces one space, each run of blank lines one break.

    str.split, not regexes: a regex substitution per space was most of a feed's text work.
    """
    if "&" in text:
        text = _UNKNOWN_ENTITY.sub(_bare_ampersand, html.unescape(text))
    if "\u200b" in text:  # zero-width space: not whitespace to str.split
        text = text.replace("\u200b", " ")
    text = strip_invisible(text)
    text = "\n".join(filter(None, (" ".join(line.split()) for line in text.split("\n"))))
    if limit is not None and len(text) > limit:
        text = cut_at_word(text, limit)
    return text


def _bare_ampersand(match: re.Match[str]) -> str:
    name = match.group(1)
    return match.group(0) if name + ";" in html.entities.html5 else "&" + name


def one_line(text: str) -> str:
    """Text with every run of whitespace made one space and no invisible format characters
    (titles, authors)."""
    return " ".join(strip_invisible(text).split())


def strip_invisible(text: str) -> str:
    """``text`` without the invisible format characters that could mislead a reader (bidi
    overrides, soft hyphens, word joiners...), keeping those a script or an emoji needs."""
    # The common cases: ASCII (no format character is; a C check at memory speed, where the
    # regex scan costs 8 us per 1.8 KB post, 4% of a cold poll's parse), else one scan, no copy.
    if text.isascii() or _MAYBE_INVISIBLE.search(text) is None:
        return text
    return _INVISIBLE.sub("", text)


def invisible_chars(text: str) -> list[str]:
    """The invisible format characters strip_invisible would drop, as U+XXXX names."""
    dropped = "".join(m.group(0) for m in _INVISIBLE.finditer(text))
    return [f"U+{ord(c):04X}" for c in dict.fromkeys(dropped)]


def cut_at_word(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-–—") + "…"


def word_count(text: str) -> int:
    return len(text.split())


def page_words(page: bytes) -> int:
    """Words of the article on a post's web page: its largest <article>, else <main>, else
    the body, without scripts, menus, banners, footers and sidebars; 0 if it has none."""
    try:
        root = lxml.etree.fromstring(page, _PARSER)
    except (lxml.etree.LxmlError, ValueError):
        return 0
    if root is None:
        return 0
    lxml.etree.strip_elements(root, *_DROP, *_FURNITURE, with_tail=False)
    for block in root.iter(*_BLOCK):  # "<p>one</p><p>two</p>" is two words, not "onetwo"
        block.text, block.tail = " " + (block.text or ""), " " + (block.tail or "")
    found: list[lxml.etree._Element] = root.xpath("//article") or root.xpath(
        "//main | //*[@role='main']"
    )
    return max(
        word_count(lxml.etree.tostring(e, method="text", encoding="unicode"))
        for e in found or [root]
    )


def reading_minutes(words: int) -> int:
    """Whole minutes to read this many words; at least one."""
    return max(1, math.ceil(words / WORDS_PER_MINUTE))
