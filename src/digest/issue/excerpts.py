"""Excerpts that open with the post's first sentence of prose and end at a sentence (no I/O).

A post's stored text has one block per line (text.html_to_text). What comes before the prose
in real feeds, and is skipped here: the post's own title again (link blogs), a lone heading
("Introduction", "Background"; older posts stored before headings were dropped), author and
acknowledgement notes ("All authors contributed equally to this work."), editorial notes
("[Updated on …]", "[Updated on …].", an "[Updated on …" never closed, "Originally published
on …"), a table of contents, Subscribe/Share furniture, image captions and code blocks (lines
that open with text.CODE_MARK). Headings later on end the excerpt or are dropped, never glued
to the next sentence; a code block later on ends it, or is left out with the sentence that
led to it. An excerpt ends at a sentence end: the first one within 15% past the limit, else
the last one in the limit's last 40%. A quotation keeps its quotation marks.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from digest.text import CODE_MARK, strip_invisible

# TeX blocks (MathJax/KaTeX macros at the top of a post) read as noise in an excerpt.
_MATH = re.compile(r"\$\$.*?\$\$|\\\[.*?\\\]|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)
HEADING_WORDS = frozenset(
    {
        "abstract",
        "background",
        "context",
        "contents",
        "executive summary",
        "foreword",
        "highlights",
        "intro",
        "introduction",
        "key takeaways",
        "motivation",
        "outline",
        "overview",
        "preamble",
        "preface",
        "prerequisites",
        "problem",
        "prologue",
        "setup",
        "summary",
        "table of contents",
        "takeaways",
        "the problem",
        "tl;dr",
        "tldr",
        "tl dr",
    }
)
_NUMBERING = re.compile(r"^(?:\d+(?:\.\d+)*|[IVX]+)[.)]?\s+")
_NOTES = [
    r"\*?\s*equal contribution",
    r"(?:corresponding )?authors?\s*:",
    r"(?:written |posted |published )?by [A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,3}$",
    r"(?:\[\s*)?(?:special )?thanks? (?:you )?to\b",
    r"\[.*\][.)]?$",  # "[Updated on 2023-01-24: …]", "[Updated on …].", "[Special thanks …]"
    r"\[\s*(?:updated?|edit(?:ed)?|note)\b",  # "[Updated on 2020-11-12: add …" never closed
    r"(?:editor'?s )?note\s*:",
    r"\(\s*(?:edit|update|note)\b",
    r"(?:update|updated|edit|edited)(?: on [^:]{1,40})?\s*:",
    r"(?:this (?:post|article|piece|essay) )?(?:was )?(?:originally|first) "
    r"(?:published|posted|appeared)\b",
    r"cross-?posted\b",
    r"(?:posted|published|last updated|updated)(?: on)? [\w ,.-]{0,30}\d{4}\.?$",
    r"\d+\s*min(?:ute)?s?\s*read$",
]
_FURNITURE = [
    r"(?:subscribe(?: now| for free| to \S+(?: \S+){0,3})?|share(?: this (?:post|article|page))?"
    r"|restack|like|comment|leave a comment|listen now|copy link|upgrade to paid"
    r"|give a gift subscription|sign up(?: now)?|read more|continue reading|read on substack"
    r"|share on \w+|follow (?:me|us) on \w+)\s*[.!→»…]*$",
    r"thanks for reading\b.*\bsubscribe\b",
    r"this is a reader-supported publication\b",
]
_CAPTIONS = [
    r"(?:fig(?:ure)?|table|listing)\.?\s*\d+\s*[:.)-]",
    r"\(?(?:image|photo|illustration|picture|diagram|chart|video)\s*"
    r"(?:\d+\s*)?(?::|by\b|from\b|credit|source|courtesy)",
    r"\(?(?:image |photo )?(?:source|credit|credits|via)\s*:",
]
# Matched at a line's start (re.match: a search would try every pattern at every position).
_NOTE = re.compile("|".join(_NOTES), re.I)
_AUTHORS = re.compile(r"contributed equally", re.I)
_FURNISHING = re.compile("|".join(_FURNITURE), re.I)
_CAPTION = re.compile("|".join(_CAPTIONS), re.I)
_TAGS = re.compile(r"tags?\s*:", re.I)
# "word ." loses its space; ".git/HEAD" and ".5 cents" keep theirs (Julia Evans's posts).
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?)])(?=\s|$)")
_ENDS = (".", "!", "?", ".”", "!”", "?”", '."', '!"', '?"', ".’", ".)", "?)", "!)")
_ABBREVIATIONS = frozenset(
    {"al.", "e.g.", "i.e.", "etc.", "vs.", "cf.", "fig.", "eq.", "no.", "dr.", "mr.", "mrs.",
     "ms.", "prof.", "st.", "approx.", "ca.", "inc.", "ltd.", "jr.", "sr.", "vol.", "pp."}
)  # fmt: skip
_INITIALS = re.compile(r"^\(?(?:[A-Za-z]\.)+$|^\(?\d{1,2}\.$")  # "I. J. Good", "1."
HEADING_MAX_WORDS = 10
SKIPPED_AT_MOST = 12  # lines looked at before the prose; past that, the text is kept as it is
PAST_LIMIT = 0.15  # a sentence that ends this far past the limit ends the excerpt whole
_OPENING_QUOTES = {"“": "”", "‘": "’"}


@lru_cache(maxsize=16_384)
def excerpt(text: str, title: str, max_words: int) -> str:
    """About ``max_words`` words of the post's prose, from its first real sentence, ending at
    a sentence end when one falls in the last 40% (else cut at a word, with "…")."""
    if max_words <= 0:
        return ""
    # Stored text is clean since it is made (text.strip_invisible); a post stored before may not be.
    text = strip_invisible(_MATH.sub(" ", text))
    lines = [line for line in (_tidy(line) for line in text.split("\n")) if line]
    words = _prose_words(_from_prose(lines, title), max_words)
    if all(word.startswith(("http://", "https://")) for word in words):
        return ""  # only the post's address (a feed that gives a link, not its words)
    return _cut(words, max_words)


def _tidy(line: str) -> str:
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(line.split()))


def _from_prose(lines: list[str], title: str) -> list[str]:
    """The lines from the first line of prose on (all of them when none of the first few is)."""
    for index, line in enumerate(lines[:SKIPPED_AT_MOST]):
        if line.startswith(CODE_MARK) or _leads_to_code(lines, index):
            continue  # code never opens an excerpt, nor "Say we have some HTML:" before it
        if _furniture(line, title):
            # "Originally published on …. The post …": the note is one sentence; a note in
            # brackets or parentheses is the whole paragraph.
            note = _NOTE.match(line) and not line.startswith(("(", "["))
            rest = _after_first_sentence(line) if note else ""
            if rest and not _furniture(rest, title):
                return [rest, *lines[index + 1 :]]
        elif not _heading(line, _after(lines, index)):
            return lines[index:]
    # Nothing but editorial notes (a summary that is only its "[Updated on …]" lines): no
    # excerpt. Other text whose prose we failed to find is kept as it is.
    if lines and len(lines) <= SKIPPED_AT_MOST and all(_NOTE.match(line) for line in lines):
        return []
    return lines


def _after_first_sentence(line: str) -> str:
    words = line.split(" ")
    for end, word in enumerate(words[:-1], start=1):
        if _ends_sentence(word):
            return " ".join(words[end:])
    return ""


def _furniture(line: str, title: str) -> bool:
    """Is this line, at the top of a post, something other than its prose?"""
    return (
        _same_title(line, title)
        or _heading_word(line)
        or bool(_NOTE.match(line) or _AUTHORS.search(line) or _FURNISHING.match(line))
        or bool(_CAPTION.match(line) or _contents(line))
    )


def _prose_words(lines: list[str], max_words: int) -> list[str]:
    """The words of the prose lines, up to a little past ``max_words``: a list's items joined
    with semicolons after its colon; a later heading dropped, or the end if enough is read;
    a block that ends without a stop gets one before a new sentence."""
    words: list[str] = []
    in_list = False
    most = max_words + math.ceil(max_words * PAST_LIMIT)
    for index, line in enumerate(lines):
        if _TAGS.match(line) or (words and _contents(line)):
            break
        if line.startswith(CODE_MARK):
            words = _without_lead_in(words) or words
            if len(words) >= max_words // 3:
                break
            words = _without_lead_in(words)
            in_list = False
            continue
        if _FURNISHING.match(line) or _CAPTION.match(line):
            continue
        if _item(line) and (in_list or (words and _opens_list(words[-1]))):
            if in_list:
                words[-1] += ";"
            in_list = True
        elif _heading(line, _after(lines, index)):
            if len(words) >= max_words // 2:
                break
            continue  # dropped, never glued to the sentence after it
        elif words and not _stopped_block(words[-1]):
            words[-1] += "." if in_list or not line[0].islower() else ""
            in_list = False
        else:
            in_list = False
        words += line.split(" ")
        if len(words) > most:
            break
    return words


def _leads_to_code(lines: list[str], index: int) -> bool:
    """A line that ends with a colon before a code block: it introduces what is left out."""
    return lines[index].endswith(":") and _after(lines, index).startswith(CODE_MARK)


def _without_lead_in(words: list[str]) -> list[str]:
    """The words less the sentence that ends with a colon before a code block left out."""
    if not words or not words[-1].endswith(":"):
        return words
    for end in range(len(words) - 1, 0, -1):
        if _ends_sentence(words[end - 1]):
            return words[:end]
    return []


def _opens_list(word: str) -> bool:
    """A list's lead-in: "…these:", or "tldr;" (Phil Eaton's posts)."""
    return word.endswith(":") or word.lower().rstrip(";:") in ("tldr", "tl;dr")


def _stopped_block(word: str) -> bool:
    """The block ends with a stop, a colon or a dash, maybe before a bracket that closes a
    note ("[Updated on …: typos fixed.]", "[...]"): nothing to add."""
    return _stopped(word.rstrip("])")) or word.endswith(("—", "–"))


def _contents(line: str) -> bool:
    """A table of contents' heading or lead-in ("Contents", "here's a table of contents:")."""
    bare = line.rstrip(" :").lower()
    return bare.endswith("contents") and (len(bare) == 8 or not bare[-9].isalnum())


def _after(lines: list[str], index: int) -> str:
    return lines[index + 1] if index + 1 < len(lines) else ""


def _cut(words: list[str], max_words: int) -> str:
    return _close_quote(_cut_words(words, max_words))


def _cut_words(words: list[str], max_words: int) -> str:
    if len(words) <= max_words:
        return " ".join(words).rstrip(" ,;:-–—")
    # The sentence that ends a little past the limit, whole, beats one cut with "…".
    most = min(len(words), max_words + math.ceil(max_words * PAST_LIMIT))
    for end in range(max_words + 1, most + 1):
        if _ends_sentence(words[end - 1]):
            return " ".join(words[:end])
    for end in range(max_words, max(1, round(max_words * 0.6)) - 1, -1):
        if _ends_sentence(words[end - 1]):
            return " ".join(words[:end])
    return " ".join(words[:max_words]).rstrip(" ,;:-–—") + "…"


def _close_quote(text: str) -> str:
    """A quotation cut before its end keeps its closing mark."""
    for opening, closing in _OPENING_QUOTES.items():
        if text.count(opening) > text.count(closing):
            return text + closing
    return text


def _ends_sentence(word: str) -> bool:
    if not word.endswith(_ENDS):
        return False
    bare = word.lower().strip('”"’)')
    return bare not in _ABBREVIATIONS and not _INITIALS.match(bare)


def _short(line: str) -> bool:
    """Not a sentence: a heading, a button's label."""
    return len(line.split(" ")) <= HEADING_MAX_WORDS and not _stopped(line)


def _item(line: str) -> bool:
    """A list's item: a line that is not a sentence (items run longer than headings)."""
    return len(line.split(" ")) <= 3 * HEADING_MAX_WORDS and not _stopped(line)


def _stopped(line: str) -> bool:
    return line.endswith((*_ENDS, ":", ";", ",", "…"))


def _heading(line: str, following: str) -> bool:
    """A short line before a new sentence (a short line before a lower-case word is a line
    of a hard-wrapped paragraph: posts stored before migration 0005 have them)."""
    attribution = line.startswith(("—", "–", "-"))  # "— Timothy B. Lee", under a quote
    return _short(line) and not attribution and bool(following) and not following[0].islower()


def _heading_word(line: str) -> bool:
    bare = _NUMBERING.sub("", line).strip(" :#*").lower()
    return bare in HEADING_WORDS


def _same_title(line: str, title: str) -> bool:
    """The post's title again (a link blog's bold link, "Release: name 1.0")."""
    if len(line) > 2 * len(title) + 20:
        return False  # a paragraph, not a title: no need to compare letter by letter
    a, b = _letters(line), _letters(title)
    return bool(b) and (a == b or (a.endswith(b) and len(a) <= len(b) + 12))


def _letters(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())
