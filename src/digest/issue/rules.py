"""Feed rules applied to a post as an issue is planned (no I/O): leave it out, or move it to
another section by its categories (the rules themselves: feedlist/rules.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from digest.patterns import compiled
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
    # RE2 (patterns.py): linear in the text, so a hostile rule cannot hold a preview or a send.
    matcher = compiled(pattern)
    return matcher is not None and any(matcher.search(text) for text in texts)
