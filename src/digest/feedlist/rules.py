"""Feed rules as a list entry writes them and as OPML outline attributes carry them.

    - [Name](https://site/) — feed: URL — skip: "(?i)sponsored|weeknotes" — section: systems
    - [Name](https://site/) — section: systems if "(?i)databases|storage"

``skip``: a post whose title or a category matches is stored but never in an issue.
``section``: the blog's posts go to that section; with ``if "REGEX"``, only posts with a
matching category do. In OPML: ``skip="…"``, ``section="systems"``, ``sectionIf="…"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from digest.errors import ConfigError
from digest.patterns import pattern_problem, shown
from digest.types import OTHER, SECTION_ORDER, FeedRules, section_for

CLAUSE = re.compile(r"(?<![\w-])(?P<key>skip|section)\s*:", re.I)
# A quoted pattern runs to the quote followed by the line's end or the next " — clause".
_QUOTED = re.compile(r'\s*"(?P<pattern>.*?)"(?=\s*(?:[—–]|\s-\s|$))')
_SECTION = re.compile(
    r'\s*(?P<name>[A-Za-z][\w ]*?)(?:\s+if\s+"(?P<pattern>.*?)")?(?=\s*(?:[—–]|\s-\s|$))', re.I
)
ATTRIBUTES = {"skip": "skip", "section": "section", "sectionIf": "section_if"}
_SEPARATORS = " \t—–-"


def parse_rules(text: str, where: str) -> FeedRules:
    """The rule clauses of a list entry (what follows its first ``skip:`` or ``section:``)."""
    found: dict[str, str] = {}
    position = 0
    while match := CLAUSE.search(text, position):
        key = match.group("key").lower()
        if key in found:
            raise ConfigError(f"{where}: `{key}:` is given twice")
        read = _skip_clause if key == "skip" else _section_clause
        values, length = read(text[match.end() :], where)
        found.update(values)
        position = match.end() + length
        left = text[position:].strip(_SEPARATORS)
        if left and not CLAUSE.match(left):
            raise ConfigError(f"{where}: cannot read the rule at {left!r}")
    return FeedRules(**found)


def _skip_clause(text: str, where: str) -> tuple[dict[str, str], int]:
    value = _QUOTED.match(text)
    if not value:
        raise ConfigError(
            f'{where}: `skip:` takes a regular expression in double quotes, e.g. skip: "(?i)ad"'
        )
    return {"skip": check_pattern(value.group("pattern"), where, "skip")}, value.end()


def _section_clause(text: str, where: str) -> tuple[dict[str, str], int]:
    value = _SECTION.match(text)
    if not value:
        raise ConfigError(f'{where}: `section:` takes ml, systems or other (and if "REGEX")')
    found = {"section": section_key(value.group("name"), where)}
    if value.group("pattern") is not None:
        found["section_if"] = check_pattern(value.group("pattern"), where, "section if")
    return found, value.end()


def rules_from_attributes(attributes: Mapping[str, str], where: str) -> FeedRules:
    """The rules of an OPML outline (a bad pattern or section is an error naming the feed)."""
    found = {ATTRIBUTES[k]: v for k, v in attributes.items() if k in ATTRIBUTES and v.strip()}
    if "section" in found:
        found["section"] = section_key(found["section"], where)
    for key in ("skip", "section_if"):
        if key in found:
            check_pattern(found[key], where, key.replace("_", " "))
    if "section_if" in found and "section" not in found:
        raise ConfigError(f"{where}: sectionIf needs a section")
    return FeedRules(**found)


def rule_attributes(rules: FeedRules) -> dict[str, str]:
    """The OPML outline attributes of ``rules``."""
    values = {"skip": rules.skip, "section": rules.section, "sectionIf": rules.section_if}
    return {name: value for name, value in values.items() if value}


def check_pattern(pattern: str, where: str, rule: str) -> str:
    """``pattern``, or ConfigError naming the rule when it is too long or not an RE2
    expression (patterns.py: matching never backtracks)."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ConfigError(f"{where}: {rule}: bad regular expression {shown(pattern)}: {problem}")
    return pattern


def section_key(name: str, where: str) -> str:
    key = section_for(name.strip())
    if key == OTHER and name.strip().lower() != OTHER:
        known = ", ".join(SECTION_ORDER)
        raise ConfigError(f"{where}: section: unknown section {name.strip()!r} (one of {known})")
    return key
