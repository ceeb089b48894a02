"""Which addresses digest may connect to on behalf of a feed: public ones, and the ranges
``feeds.allow_networks`` opens. Pure: no I/O (the transport resolves a host, this decides).

Feeds, their redirects, post pages and home pages are URLs that strangers choose: without
this rule a feed could point digest at a service on its own host or network (SSRF) and put
what it answers into an issue.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from digest.settingvalues import Network

IPAddress = IPv4Address | IPv6Address

# Shared address space (RFC 6598): ipaddress calls it neither private nor global.
CGNAT = ipaddress.ip_network("100.64.0.0/10")


def refusal(address: str | IPAddress, allowed: Sequence[Network] = ()) -> str | None:
    """Why digest must not connect to ``address`` (e.g. "a loopback address"), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    return _kind(ip)


def _kind(ip: IPAddress) -> str | None:
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.version == 4 and ip in CGNAT, "a shared (carrier-grade NAT) address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    )
    return next((why for refused, why in checks if refused), None)


def literal_refusal(host: str | None, allowed: Sequence[Network] = ()) -> str | None:
    """For a host written as an IP address (or ``localhost``), why it is refused; None for a
    host name, whose addresses are only known once resolved (the transport checks those)."""
    if not host:
        return None
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return refusal("127.0.0.1", allowed)
    try:
        return refusal(name, allowed)
    except ValueError:
        return None
