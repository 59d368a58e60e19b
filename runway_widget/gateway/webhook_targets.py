"""Where a participant's webhook may point: never inside the gateway's own network.

The gateway POSTs to the ``webhook_url`` a participant names, from the machine that holds
the real key. Left open, that makes it a relay into its own loopback, link-local (cloud
metadata) and private networks. So every address the host name resolves to is checked, at
submit time and again just before each send (a name may resolve elsewhere by then). The
instructor can allow such targets for a rehearsal on one machine (``serve
--allow-private-webhooks``).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["address_refusal", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE = tuple(  # RFC 1918 and RFC 4193
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def address_refusal(address: IPAddress) -> str | None:
    """Which rule forbids sending to ``address`` (None if none does)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if any(address.version == n.version and address in n for n in _PRIVATE):
        return "a private address (RFC 1918/4193)"
    return None


def refusal(url: str) -> str | None:
    """Why the gateway must not POST to ``url`` (None if it may). Resolves the host name."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "webhook_url is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "webhook_url must be an http(s) URL with a host"
    try:
        found = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"webhook_url host {host!r} does not resolve"
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        rule = address_refusal(address)
        if rule is not None:
            return f"webhook_url must not point at {rule} ({host} -> {address})"
    return None
