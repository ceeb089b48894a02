"""Feed rules' regular expressions (`skip:`, `section: ... if`), compiled and matched by RE2.

A rule comes from a list entry or an OPML outline, and an OPML file may come from anyone
(`digest opml import URL`), so a pattern is hostile input. Python's `re` backtracks:
`(a+)+$` took 0.25 s against a title of 20 a's and a "!", 2.2 s against 24, doubling with
each letter, and held `digest preview` and `digest send` forever on a longer title; RE2 (the
google-re2 wheel) matches in time linear in the text whatever the pattern (0.2 ms against
100,000 a's). The price: RE2's syntax, without lookaround and backreferences, which a rule
that leaves out "sponsored" or "weeknotes" has no use for.

A pattern is capped at MAX_PATTERN characters before anything compiles it: a 9.5 MB rule
cost 1.5 GB on every poll (re.compile of the OPML file's rules), and 5,000 nested groups
overflowed `re`'s recursion (a RecursionError traceback).
"""

from __future__ import annotations

import functools
from typing import Protocol

import re2

# Real rules are a few words joined by "|" (the seeds' longest: 40 characters); a pattern
# longer than this is a mistake or an attack.
MAX_PATTERN = 500


class Matcher(Protocol):
    def search(self, text: str) -> object | None: ...


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 writes each bad pattern to stderr; we report it once
    return options


_OPTIONS = _options()


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` can't be a rule (too long, or not a regular expression RE2 reads);
    None when it can."""
    if len(pattern) > MAX_PATTERN:
        return f"longer than {MAX_PATTERN:,} characters ({len(pattern):,})"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "unreadable"
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return f"{text} (rules are RE2 expressions: no lookaround, no backreferences)"
    return None


def compiled(pattern: str) -> Matcher | None:
    """``pattern`` compiled by RE2; None when it can't be a rule (pattern_problem says why):
    one stored before these checks matches nothing rather than stopping an issue."""
    return None if len(pattern) > MAX_PATTERN else _compiled(pattern)  # no huge cache keys


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Matcher | None:
    if pattern_problem(pattern) is not None:
        return None
    matcher: Matcher = re2.compile(pattern, _OPTIONS)
    return matcher


def shown(pattern: str, width: int = 60) -> str:
    """``pattern`` quoted for one line of output: control characters escaped, cut to
    ``width`` characters with its length (a hostile rule may be megabytes)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in pattern[: width + 1])
    if len(pattern) > width:
        return f'"{text[:width]}…" ({len(pattern):,} characters)'
    return f'"{text}"'
