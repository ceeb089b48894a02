"""The curator's words (an issue's intro, a note under a pick): a small, safe part of Markdown
(no I/O).

One paragraph of text with [links](https://…), bare https:// links, *emphasis* and
**strong**; everything else is text, escaped. Links go only to http(s) and mailto: a
[link](javascript:…) keeps its words and loses its target. A library (markdown-it-py,
mistune) would parse more than we allow and then need its HTML, images and raw tags
switched off one by one; these forty lines parse exactly what we allow.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from markupsafe import Markup

from digest.text import one_line

# One token at a time, first match wins: an escaped character, a link, strong, emphasis, a
# bare URL. Emphasis with _ only at word edges: snake_case_names stay as they are.
_TOKEN = re.compile(
    r"\\(?P<escaped>[\\`*_\[\]()<>#!.-])"
    r"|\[(?P<label>[^\[\]]+)\]\((?P<target>[^()\s]+)\)"
    r"|\*\*(?P<strong>[^*]+?)\*\*|(?<!\w)__(?P<strong_>[^_]+?)__(?!\w)"
    r"|\*(?P<em>[^*\s](?:[^*]*[^*\s])?)\*|(?<!\w)_(?P<em_>[^_\s](?:[^_]*[^_\s])?)_(?!\w)"
    r"|(?P<url>(?:https?://|mailto:)[^\s<>\"]+[^\s<>\".,;:!?)\]'])"
)
# What _render adds to the plain text besides the words: a link's " (target)", emphasis marks.
_TARGETS = re.compile(r" \((?:https?://|[^()\s]+@)[^()\s]*\)")
_MARKS = re.compile(r"(?<!\w)[*_]|[*_](?!\w)")
_KINDS = ("escaped", "label", "strong", "strong_", "em", "em_", "url")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]*\s+(?=[\"“‘(]?[A-Z0-9])")
MAX_CHARS = 2000  # an intro is a short paragraph; longer text is cut (with "…")


@dataclass(frozen=True)
class Inline:
    """The curator's text as given, and as HTML (escaped, safe links) and plain text."""

    source: str
    html: Markup
    text: str  # the plain-text part's: *strong*, _emphasis_, "words (https://…)"
    words: str = ""  # the words alone: no marks, no link targets

    @property
    def first_sentence(self) -> str:
        """The first sentence of its words (the preheader an inbox shows)."""
        return _SENTENCE_END.split(self.words, maxsplit=1)[0]

    def __bool__(self) -> bool:
        return bool(self.source)


def parse_inline(source: str) -> Inline:
    """``source`` (Markdown: links and emphasis, one paragraph) as HTML and plain text."""
    text = one_line(source)
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS].rsplit(" ", 1)[0] + "…"
    out_html: list[str] = []
    out_text: list[str] = []
    _render(text, out_html, out_text)
    words = _MARKS.sub("", _TARGETS.sub("", "".join(out_text)))
    return Inline(text, Markup("".join(out_html)), "".join(out_text), " ".join(words.split()))


def _render(text: str, out_html: list[str], out_text: list[str], *, in_link: bool = False) -> None:
    at = 0
    for m in _TOKEN.finditer(text):
        kind = next(name for name in _KINDS if m.group(name) is not None)
        if in_link and kind in ("label", "url"):
            continue  # no link inside a link: its words stay text
        _plain(text[at : m.start()], out_html, out_text)
        at = m.end()
        if kind == "escaped":
            _plain(m.group("escaped"), out_html, out_text)
        elif kind == "label":
            _link(m.group("label"), m.group("target"), out_html, out_text)
        elif kind == "url":
            _link(m.group("url"), m.group("url"), out_html, out_text)
        else:
            tag = "strong" if kind.startswith("strong") else "em"
            mark = "*" if tag == "strong" else "_"
            out_html.append(f"<{tag}>")
            out_text.append(mark)
            _render(m.group(kind), out_html, out_text, in_link=in_link)
            out_html.append(f"</{tag}>")
            out_text.append(mark)
    _plain(text[at:], out_html, out_text)


def _plain(text: str, out_html: list[str], out_text: list[str]) -> None:
    out_html.append(html.escape(text, quote=False))
    out_text.append(text)


def _link(label: str, target: str, out_html: list[str], out_text: list[str]) -> None:
    if not target.lower().startswith(_SAFE_SCHEMES):
        _render(label, out_html, out_text, in_link=True)  # the words stay, the target goes
        return
    out_html.append(f'<a href="{html.escape(target, quote=True)}">')
    before = len(out_text)
    _render(label, out_html, out_text, in_link=True)
    out_html.append("</a>")
    words = "".join(out_text[before:])
    shown = target.removeprefix("mailto:")
    if words not in (target, shown):
        out_text.append(f" ({shown})")
