"""Feed rules applied to a post as an issue is planned (no I/O): leave it out, or move it to
another section by its categories (the rules themselves: feedlist/rules.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from functools import lru_cache

from digest.types import FeedRules, StoredPost


def apply_rules(post: StoredPost, categories: str | None, rules: FeedRules) -> StoredPost | None:
    """``post`` as its feed's rules have it; None when a skip rule matches its title or one
    of its categories (``categories``: one a line, as stored)."""
    if not rules:
        return post
    tags = categories.split("\n") if categories else []
    if rules.skip and _matches(rules.skip, [post.title, *tags]):
        return None
    if rules.section and rules.section_if and _matches(rules.section_if, tags):
        return replace(post, section=rules.section)
    return post


def _matches(pattern: str, texts: Iterable[str]) -> bool:
    compiled = _compiled(pattern)
    return compiled is not None and any(compiled.search(text) for text in texts)


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # checked when the OPML file was read; this one was stored by hand
        return None
