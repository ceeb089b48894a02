"""Pure decisions of the web endpoint's limits (no I/O; the time is an argument): sign-ups per
client address per hour, failed webhook logins per client, and which addresses count as one
client."""

from __future__ import annotations

import ipaddress
import threading
from collections import deque

HOUR_S = 3600.0
# Clients remembered at once; past this the quietest are forgotten first (memory stays
# bounded whatever a flood of addresses does: ~200 bytes a client, 2 MB in all).
MAX_CLIENTS = 10_000


def client_key(host: str | None) -> str:
    """The unit a limit counts: an IPv4 address, or an IPv6 /64 (one subscriber line gets a
    whole /64, so counting single IPv6 addresses would be no limit at all)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class SlidingLimit:
    """At most ``limit`` events per key in any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float = HOUR_S, max_keys: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[str, tuple[deque[float], int]] = {}  # key -> (times, refusals)
        self._lock = threading.Lock()  # endpoints run in a thread pool

    def refusals(self, key: str, now: float) -> int:
        """Count one event for ``key`` at ``now`` (seconds): 0 when within the limit, else
        how many were refused in a row (1: the first, worth a log line), nothing counted."""
        with self._lock:
            times, refused = self._seen.pop(key, (deque(), 0))
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) < self.limit:
                times.append(now)
                refused = 0
            else:
                refused += 1
            self._seen[key] = (times, refused)  # re-inserted: the dict is ordered by activity
            if len(self._seen) > self.max_keys:
                del self._seen[next(iter(self._seen))]
            return refused

    def over(self, key: str, now: float) -> bool:
        """Whether ``key`` has used up its limit for the window ending at ``now`` (counts
        nothing)."""
        with self._lock:
            times = self._seen.get(key, (deque(), 0))[0]
            return sum(1 for t in times if t > now - self.window_s) >= self.limit
