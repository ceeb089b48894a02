"""The network policy: which addresses digest may connect to for a feed (pure)."""

from __future__ import annotations

import pytest

from digest.ingest.addresses import literal_refusal, refusal
from digest.settingvalues import parse_networks


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.9.9.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),  # the cloud metadata service
        ("fe80::1%eth0", "a link-local address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("fd12:3456::1", "a private address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("192.0.2.10", "a private address"),  # TEST-NET-1, documentation only
        ("93.184.215.14", None),
        ("2606:4700::6810:84e5", None),
    ],
)
def test_only_public_addresses_by_default(address: str, why: str | None) -> None:
    assert refusal(address) == why


def test_allow_networks_opens_chosen_ranges_only() -> None:
    allowed = parse_networks("127.0.0.2/32, 10.0.0.0/8,fd00::/8")
    assert refusal("127.0.0.2", allowed) is None
    assert refusal("127.0.0.1", allowed) == "a loopback address"
    assert refusal("10.200.0.1", allowed) is None
    assert refusal("::ffff:10.0.0.1", allowed) is None
    assert refusal("fd00::5", allowed) is None
    assert refusal("192.168.0.1", allowed) == "a private address"


def test_allow_networks_refuses_what_is_not_a_range() -> None:
    with pytest.raises(ValueError, match="'intranet' is not an address or a CIDR range"):
        parse_networks("10.0.0.0/8, intranet")
    assert parse_networks(["127.0.0.0/8"]) == parse_networks("127.0.0.0/8")
    assert parse_networks("") == ()


def test_literal_hosts_are_judged_without_a_lookup() -> None:
    assert literal_refusal("127.0.0.1") == "a loopback address"
    assert literal_refusal("localhost") == "a loopback address"
    assert literal_refusal("[::1]") == "a loopback address"
    assert literal_refusal("blog.example") is None  # only known once resolved
    assert literal_refusal("8.8.8.8") is None
    assert literal_refusal("localhost", parse_networks("127.0.0.0/8")) is None
