"""PostRow: the one place a post's stored values are named (issue 20, the house)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from digest.ingest.worker import parse_or_failure
from digest.models import POSTS
from digest.types import ParsedFeed, PostRow
from tests.poll_helpers import rss


def test_every_field_is_a_posts_column_of_the_same_name() -> None:
    assert set(PostRow._fields) <= set(POSTS.c.keys())


def test_rows_cross_the_process_pool_as_post_rows() -> None:
    parsed = parse_or_failure(rss(2), "https://blog.example/feed", {}, datetime.now(UTC))
    assert isinstance(parsed, ParsedFeed)
    back = pickle.loads(pickle.dumps(parsed))  # what the pool does to a worker's answer
    assert back == parsed and all(type(row) is PostRow for row in back.rows)
    first = back.rows[0]
    assert (first.key, first.title, first.canonical_url) == (
        "https://blog.example/posts/1",
        "Post 1",
        "https://blog.example/posts/1.html",
    )
