"""Conditional answers from a key known before building: the archive and its feed are named
by what they show (the issues' stamp, the page, the settings that shape them), so a poller's
If-None-Match or If-Modified-Since is answered 304 without building anything, and a body
built once is served again until its key changes.

The ETag is a hash of the key and the process's fingerprint (digest's version and the
settings the pages carry), so it holds across restarts and changes with base_url. The
Last-Modified is when this process first saw the key (a restart makes it later: a client that
asks by date gets the body once more, never a stale 304).

At 260 issues (bench/archive.py --before, the same load for both) a 304 of /feed.xml took
466 ms and 42 statements (the whole feed built, an lxml parse per entry, before its ETag was
known) and now 17.6 ms and 2 (SQLite's BEGIN and one SELECT), whatever the history.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response


@dataclass
class _Entry:
    seen: datetime  # when this process first answered the key (a whole second)
    body: bytes | None = None


class Conditional:
    """Bodies by key, at most ``entries`` of them (the least recently asked goes first)."""

    def __init__(
        self,
        fingerprint: str,
        entries: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fingerprint = fingerprint
        self.entries = entries
        self.clock = clock
        self._found: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._last_seen = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def etag(self, key: Hashable) -> str:
        digest = hashlib.sha256(f"{self.fingerprint}\n{key!r}".encode()).hexdigest()
        return f'"{digest[:32]}"'

    def answer(
        self,
        request: Request,
        key: Hashable,
        build: Callable[[], bytes],
        media_type: str,
        headers: Mapping[str, str],
    ) -> Response:
        """304 when the request's validators match ``key``; else the body (built at most
        once per key while it stays in the cache)."""
        entry = self._entry(key)
        validators = {"ETag": self.etag(key), "Last-Modified": format_datetime(entry.seen, True)}
        answered = {**headers, **validators}
        if not_modified(request.headers, validators["ETag"], entry.seen):
            return Response(status_code=304, headers=answered)
        body = entry.body
        if body is None:
            body = build()
            with self._lock:
                entry.body = body
        return Response(body, media_type=media_type, headers=answered)

    def _entry(self, key: Hashable) -> _Entry:
        with self._lock:
            entry = self._found.get(key)
            if entry is None:
                entry = self._found[key] = _Entry(self._next_seen())
                while len(self._found) > self.entries:
                    self._found.popitem(last=False)
            self._found.move_to_end(key)
            return entry

    def _next_seen(self) -> datetime:
        """Now, in whole seconds (HTTP dates have no finer ones), and always later than the
        key seen before: a key that changed within the same second as the last one must not
        answer an If-Modified-Since of that second with a 304."""
        now = self.clock().astimezone(UTC).replace(microsecond=0)
        self._last_seen = max(now, self._last_seen + timedelta(seconds=1))
        return self._last_seen


def not_modified(headers: Mapping[str, str], etag: str, modified: datetime) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present (weak comparison); otherwise
    If-Modified-Since, when it parses, against the whole second of ``modified``."""
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError, IndexError):
        return False
    if when.tzinfo is None:
        return False  # "-0000": no zone said; HTTP dates are GMT, this is none
    return modified.replace(microsecond=0) <= when
