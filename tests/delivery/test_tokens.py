"""Unsubscribe tokens: round trip, and every kind of forgery or alteration refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.delivery.tokens import (
    PREFERENCES,
    check_confirm_token,
    check_form_token,
    check_token,
    confirm_claim,
    make_confirm_token,
    make_form_token,
    make_token,
    token_id,
)

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


# --- one purpose each; confirmation links expire; forms carry their own tokens ------------

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def test_a_token_serves_one_purpose_only() -> None:
    unsubscribe = make_token(KEY, 42, "reader@example.com")
    preferences = make_token(KEY, 42, "reader@example.com", PREFERENCES)
    assert unsubscribe != preferences
    assert check_token(KEY, preferences, 42, "reader@example.com", PREFERENCES)
    assert not check_token(KEY, unsubscribe, 42, "reader@example.com", PREFERENCES)
    assert not check_token(KEY, preferences, 42, "reader@example.com")  # no unsubscribing
    assert not check_confirm_token(KEY, unsubscribe, 42, "reader@example.com")
    assert confirm_claim(preferences) is None


def test_an_unsubscribe_token_is_what_earlier_issues_carried() -> None:
    # Links already in inboxes keep working: the unsubscribe MAC is unchanged.
    assert make_token(KEY, 42, "reader@example.com") == "42.tGu6jftMEmUKurvYak6jhQ"


def test_confirm_token_carries_its_expiry_inside_the_mac() -> None:
    expires = NOW + timedelta(hours=48)
    token = make_confirm_token(KEY, 42, "reader@example.com", expires)
    assert confirm_claim(token) == (42, expires)
    assert check_confirm_token(KEY, token, 42, "Reader@example.com")
    subscriber_id, stamp, mac = token.split(".")
    later = f"{subscriber_id}.{int(stamp) + 86400}.{mac}"  # a day more, same MAC
    assert confirm_claim(later) is not None
    assert not check_confirm_token(KEY, later, 42, "reader@example.com")
    assert not check_confirm_token(KEY, f"43.{stamp}.{mac}", 43, "reader@example.com")
    assert not check_confirm_token(KEY, token, 42, "other@example.com")
    assert not check_confirm_token("other", token, 42, "reader@example.com")
    assert token_id(token) is None  # no unsubscribe token either


def test_form_tokens_are_for_one_form_one_subscriber_until_they_expire() -> None:
    token = make_form_token(KEY, "preferences", 42, NOW + timedelta(hours=1))
    assert check_form_token(KEY, token, "preferences", 42, NOW)
    assert not check_form_token(KEY, token, "preferences", 42, NOW + timedelta(hours=2))
    assert not check_form_token(KEY, token, "preferences", 43, NOW)
    assert not check_form_token(KEY, token, "confirm", 42, NOW)
    assert not check_form_token("other", token, "preferences", 42, NOW)
    assert not check_form_token(KEY, "", "preferences", 42, NOW)
    assert not check_form_token(KEY, token + "x", "preferences", 42, NOW)
