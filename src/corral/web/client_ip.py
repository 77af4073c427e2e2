"""The client's IP address: the one function every log line, audit row, session and throttle uses.

``X-Forwarded-For`` is only a claim, and anyone can send it. It is believed only when the direct
peer is one of the configured reverse proxies (``CORRAL_WEB__TRUSTED_PROXIES``; empty trusts
nobody). Then the header is read from the right, skipping our own proxies, and the first address
that is not one of them is the client: everything to its left was written by the client itself
and proves nothing. A value that is not an IP address means the chain cannot be read, so the peer
is used instead; a made-up header can never put text where an address belongs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


def parse_address(value: str) -> Address | None:
    """An address as proxies write it (``203.0.113.7``, ``2001:db8::1``, ``203.0.113.7:5123``,
    ``[2001:db8::1]:5123``), or None when it is not one."""
    text = value.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        return ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def client_ip(peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]) -> str | None:
    """The client's address as text, or None when the peer is not an IP (a Unix socket, say).

    ``forwarded_for`` is every ``X-Forwarded-For`` header of the request, in order.
    """
    peer_address = parse_address(peer) if peer else None
    if peer_address is None:
        return None
    if not proxies or not _trusted(peer_address, proxies):
        return str(peer_address)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    found = peer_address
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return str(peer_address)
        found = address
        if not _trusted(address, proxies):
            break
    # Either the first hop that is not ours, or (every hop being a proxy of ours) the farthest one.
    return str(found)
