"""Unsubscribe tokens: round trip, and every kind of forgery or alteration refused."""

from __future__ import annotations

import pytest

from digest.delivery.tokens import check_token, make_token, token_id

KEY = "k" * 64


def test_round_trip() -> None:
    token = make_token(KEY, 42, "reader@example.com")
    assert token.startswith("42.")
    assert token_id(token) == 42
    assert check_token(KEY, token, 42, "reader@example.com")
    assert check_token(KEY, token, 42, "Reader@Example.com")  # addresses compare case-blind


def test_url_safe_and_short() -> None:
    token = make_token(KEY, 123456789, "reader@example.com")
    assert len(token) < 40
    assert all(c.isalnum() or c in "._-" for c in token)


def test_other_key_subscriber_or_address_fails() -> None:
    token = make_token(KEY, 42, "reader@example.com")
    assert not check_token("other", token, 42, "reader@example.com")
    assert not check_token(KEY, token, 43, "reader@example.com")
    assert not check_token(KEY, token, 42, "someone@example.com")


def test_id_swapped_into_a_valid_token_fails() -> None:
    mac = make_token(KEY, 42, "reader@example.com").split(".")[1]
    forged = f"43.{mac}"
    assert token_id(forged) == 43
    assert not check_token(KEY, forged, 43, "reader@example.com")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "42",
        "42.",
        "x.AAAAAAAAAAAAAAAAAAAAAA",
        "0.AAAAAAAAAAAAAAAAAAAAAA",
        "42.AAAA",
        "-1.abc",
        "42.AAAAAAAAAAAAAAAAAAAAAA/",
        "42.AAAAAAAAAAAAAAAAAAAAA=",
        "1" * 30 + ".AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_tokens(token: str) -> None:
    assert not check_token(KEY, token, 42, "reader@example.com")


def test_every_altered_character_fails() -> None:
    token = make_token(KEY, 42, "reader@example.com")
    for i, c in enumerate(token):
        for other in ("A", "b", "9", "_", "-", "."):
            if other != c:
                altered = token[:i] + other + token[i + 1 :]
                assert not check_token(KEY, altered, 42, "reader@example.com"), altered
