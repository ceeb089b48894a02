"""The parser workers' side of a poll: feed bytes to rows ready to store.

Runs in the poll's process pool, so it imports no SQLAlchemy (parser processes stay small)
and returns PostRows (named tuples: they pickle as plain tuples do).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime

from digest import columns as width
from digest.columns import clean, fit
from digest.errors import ParseError
from digest.processes import pid_alive
from digest.types import FeedData, ParsedFeed, PostData, PostRow
from digest.urls import canonical_url

# How often a worker looks for its poll process; it exits within this long of that one's death.
PARENT_CHECK_S = 1.0
# Tests only: a body holding these bytes kills the worker parsing it (os._exit), as an
# out-of-memory kill or a crash in a C extension would. Read when the worker module loads.
CRASH_MARKER_ENV = "DIGEST_TEST_PARSER_CRASH_MARKER"
_CRASH_MARKER = os.environ.get(CRASH_MARKER_ENV, "").encode()


def exit_with_parent(poll_pid: int) -> None:
    """Run in each parser process as it starts: end it when the poll's process is gone.

    A `kill -9` of `digest poll` or `digest run` (or the OOM killer) tells the pool nothing:
    its workers would wait on their task queue forever, and keep the forkserver and the
    resource tracker alive with them (both hold on while any worker does).
    """

    def watch() -> None:
        while pid_alive(poll_pid):
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="digest-parent-watch", daemon=True).start()


def parse_feed(
    body: bytes, url: str, headers: Mapping[str, str] | None = None, *, now: datetime
) -> FeedData:
    """digest.ingest.parse.parse_feed, imported on first use: a poll that parses nothing in this
    process (all 304s, or a process pool) never loads feedparser here (80 ms of start-up)."""
    from digest.ingest.parse import parse_feed as parse

    return parse(body, url, headers, now=now)


def parse_or_failure(
    body: bytes, url: str, headers: Mapping[str, str], now: datetime
) -> ParsedFeed | str:
    """parse_feed, then the rows to store; any failure turned into its one-line message.

    Runs in a worker process: what it returns must pickle (PostRows, named tuples), and a
    bug in the parser must cost one feed, never the poll. The per-post work that needs no
    database (fitting values to columns, canonical URLs) is done here, on the workers' cores,
    rather than in the store thread, which shares one core with the event loop.
    """
    if _CRASH_MARKER and _CRASH_MARKER in body and _in_worker():
        os._exit(70)
    try:
        data = parse_feed(body, url, headers, now=now)
        return ParsedFeed(
            title=fit(data.title, width.NAME),
            site_url=fit(data.site_url, width.URL, cut=False),
            rows=tuple(post_row(p) for p in data.posts),
            warning=fit(data.warning, width.WARNING),
        )
    except ParseError as e:
        return e.message
    except Exception as e:  # noqa: BLE001 - hostile input must not end the poll
        return f"the parser failed: {type(e).__name__}: {e}"


def _in_worker() -> bool:
    import multiprocessing

    return multiprocessing.parent_process() is not None


def post_row(post: PostData) -> PostRow:
    """A post's stored values, fitted to the columns (hostile feeds send anything)."""
    key = post.key if len(post.key) <= width.URL else "sha256:" + _sha(post.key)
    link = fit(post.link, width.URL, cut=False)
    return PostRow(
        key=clean(key),
        title=clean(post.title),
        link=link,
        canonical_url=_canonical(link),
        author=fit(post.author, width.NAME),
        published=post.published,
        updated=post.updated,
        date=post.published or post.updated,
        text=clean(post.text),
        words=post.words,
        teaser=post.teaser,
        categories=clean("\n".join(post.categories)) or None,
        links="\n".join(dict.fromkeys(filter(None, map(_canonical_link, post.links)))) or None,
        content_hash=post.content_hash[: width.HASH],
    )


def _canonical(link: str | None) -> str | None:
    if not link:
        return None
    try:
        value = canonical_url(link, normalized=True)
    except ValueError:
        return link
    return value if len(value) <= width.URL else link


def _canonical_link(url: str) -> str | None:
    """A link found in a post's body, as posts.canonical_url spells the post it points to."""
    try:
        value = canonical_url(clean(url))
    except ValueError:
        return None
    return value if len(value) <= width.URL else None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
