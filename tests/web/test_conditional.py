"""web/conditional.py on its own: which validators answer 304 (RFC 9110 13.1), Last-Modified
in whole seconds and never the same second for two keys, a body built once per key, the
least recently asked key evicted first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from digest.web.conditional import Conditional, not_modified

ETAG = '"abc"'
MODIFIED = datetime(2026, 12, 5, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, False),
        ({"if-none-match": '"abc"'}, True),
        ({"if-none-match": 'W/"abc"'}, True),  # weak comparison
        ({"if-none-match": '"x", "abc"'}, True),
        ({"if-none-match": "*"}, True),
        ({"if-none-match": '"other"'}, False),
        # If-None-Match decides when present: a matching date doesn't save a changed tag.
        ({"if-none-match": '"other"', "if-modified-since": "Sat, 05 Dec 2026 08:00:00 GMT"}, False),
        ({"if-modified-since": "Sat, 05 Dec 2026 08:00:00 GMT"}, True),
        ({"if-modified-since": "Sat, 05 Dec 2026 09:00:00 GMT"}, True),
        ({"if-modified-since": "Sat, 05 Dec 2026 07:59:59 GMT"}, False),
        ({"if-modified-since": "Sat, 05 Dec 2026 08:00:00 -0000"}, False),  # no zone said
        ({"if-modified-since": "yesterday"}, False),
        ({"if-modified-since": ""}, False),
    ],
)
def test_which_validators_answer_not_modified(headers: dict[str, str], expected: bool) -> None:
    assert not_modified(headers, ETAG, MODIFIED) is expected


def request(**headers: str) -> Request:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


class Clock:
    def __init__(self) -> None:
        self.now = MODIFIED + timedelta(microseconds=300_000)

    def __call__(self) -> datetime:
        return self.now


def test_a_body_is_built_once_per_key_and_a_new_key_is_a_later_second() -> None:
    clock, built = Clock(), list[str]()

    def build(text: str) -> bytes:
        built.append(text)
        return text.encode()

    answers = Conditional("settings", 4, clock)
    first = answers.answer(request(), "k1", lambda: build("one"), "text/plain", {})
    again = answers.answer(request(), "k1", lambda: build("one"), "text/plain", {})
    assert (first.body, again.body, built) == (b"one", b"one", ["one"])
    assert first.headers["last-modified"] == "Sat, 05 Dec 2026 08:00:00 GMT"
    assert first.headers["etag"] == again.headers["etag"] == answers.etag("k1")
    # A new key within the same second: a later Last-Modified, so that second's copy is stale.
    second = answers.answer(request(), "k2", lambda: build("two"), "text/plain", {})
    assert second.headers["last-modified"] == "Sat, 05 Dec 2026 08:00:01 GMT"
    stale = request(if_modified_since=first.headers["last-modified"])
    assert answers.answer(stale, "k2", lambda: build("two"), "text/plain", {}).status_code == 200
    fresh = request(if_modified_since=second.headers["last-modified"])
    not_built = answers.answer(fresh, "k2", lambda: build("never"), "text/plain", {"X-A": "b"})
    assert (not_built.status_code, not_built.body, not_built.headers["x-a"]) == (304, b"", "b")
    assert built == ["one", "two"]


def test_the_etag_names_the_key_and_the_settings() -> None:
    one, other = Conditional("base_url=a", 1), Conditional("base_url=b", 1)
    assert one.etag("k") == Conditional("base_url=a", 1).etag("k")  # across restarts
    assert len({one.etag("k"), one.etag("k2"), other.etag("k")}) == 3


def test_the_least_recently_asked_key_goes_first() -> None:
    answers, built = Conditional("", 2), list[str]()

    def ask(key: str) -> None:
        def build() -> bytes:
            built.append(key)
            return key.encode()

        answers.answer(request(), key, build, "text/plain", {})

    for key in ("a", "b", "a", "c", "a", "b"):
        ask(key)
    assert built == ["a", "b", "c", "b"]  # c pushed b out; a, asked again, stayed
