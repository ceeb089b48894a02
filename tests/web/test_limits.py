"""The sign-up limits' pure decisions: a sliding hour per client, IPv6 counted by /64."""

from __future__ import annotations

from digest.web.limits import SlidingLimit, client_key


def test_a_sliding_window_per_client() -> None:
    limit = SlidingLimit(3, window_s=3600)
    assert [limit.refusals("a", t) for t in (0, 10, 20, 30, 40)] == [0, 0, 0, 1, 2]
    assert limit.refusals("b", 40) == 0  # another client, its own count
    assert limit.refusals("a", 3600) == 0  # the first sign-up has left the hour
    assert limit.refusals("a", 3601) == 1  # 10, 20 and 3600 are still in it


def test_refused_sign_ups_do_not_extend_the_wait() -> None:
    limit = SlidingLimit(1, window_s=100)
    assert limit.refusals("a", 0) == 0
    for t in range(1, 100):
        assert limit.refusals("a", t) == t
    assert limit.refusals("a", 100) == 0


def test_memory_stays_bounded_under_a_flood_of_addresses() -> None:
    limit = SlidingLimit(1, max_keys=100)
    for k in range(10_000):
        limit.refusals(f"10.0.{k // 256}.{k % 256}", float(k))
    assert len(limit._seen) == 100


def test_client_keys() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff::1") == client_key("2001:db8:1:2::9")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
    assert client_key("testclient") == "testclient"
