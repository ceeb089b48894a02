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
    def address(k: int) -> str:
        return f"10.0.{k // 256}.{k % 256}"

    limit = SlidingLimit(1, window_s=10**9, max_keys=100)  # nothing leaves the window
    for k in range(10_000):
        assert limit.refusals(address(k), float(k)) == 0
    # The last 100 clients are remembered (a second sign-up is refused) ...
    assert limit.refusals(address(9_900), 10_000.0) == 1
    assert limit.refusals(address(9_999), 10_001.0) == 1
    # ... and the ones before them forgotten: counted afresh, as if never seen.
    assert limit.refusals(address(9_899), 10_002.0) == 0
    assert limit.refusals(address(0), 10_003.0) == 0


def test_client_keys() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff::1") == client_key("2001:db8:1:2::9")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
    assert client_key("testclient") == "testclient"
