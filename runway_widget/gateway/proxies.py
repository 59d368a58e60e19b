"""Whose request this is: the socket's peer, or what a proxy the instructor trusts says.

``X-Forwarded-For`` and ``X-Real-IP`` are written by whoever sends the request, so they are
believed only when the connection comes from a trusted proxy (``serve --trusted-proxy CIDR``;
default none; on JupyterHub, its own proxy). Then ``X-Forwarded-For`` is read from the right,
as each proxy appends the address it saw: the first address that is not itself a trusted
proxy is the client; anything left of it was written by the client and is ignored.
``X-Real-IP`` counts only when no ``X-Forwarded-For`` came (a proxy that sets it overwrites
it). Connection slots stay per socket peer: a trusted proxy's connections carry many clients.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tornado.httputil import HTTPHeaders

__all__ = [
    "LOOPBACK",
    "IPNetwork",
    "TrustedProxies",
    "client_network",
    "is_loopback_host",
    "parse_network",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_CLIENT_PREFIX = 64  # one IPv6 host is given a whole /64: it counts as one client
MAX_HOPS = 32  # a longer X-Forwarded-For is read no further left
LOOPBACK = ("127.0.0.0/8", "::1/128")


def parse_network(text: str) -> IPNetwork:
    """``10.0.0.0/8``, ``127.0.0.1`` or ``::1``; ValueError for anything else."""
    return ipaddress.ip_network(text.strip(), strict=False)


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (what only this machine can reach)."""
    if host == "localhost":
        return True
    address = _address(host or "")
    return address is not None and address.is_loopback


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_network(peer: str) -> str:
    """What counts as one client for connection slots: an IPv4 address, an IPv6 /64."""
    address = _address(peer)
    if address is None:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` / ``X-Real-IP`` / ``X-Forwarded-Proto`` count."""

    def __init__(self, networks: Iterable[str | IPNetwork] = ()) -> None:
        self.networks = tuple(
            n if isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network) else parse_network(n)
            for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({', '.join(map(str, self.networks)) or 'none'})"

    def trusts(self, peer: str) -> bool:
        if not self.networks:  # the usual case: no proxy, nothing to parse
            return False
        address = _address(peer)
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, headers: HTTPHeaders) -> str:
        """The client's address: ``peer`` itself unless ``peer`` is a trusted proxy."""
        if not self.trusts(peer):
            return peer
        hops = ",".join(headers.get_list("X-Forwarded-For")).split(",")
        hops = [hop for hop in hops if hop.strip()]
        if not hops:
            real = _address(headers.get("X-Real-IP", ""))
            return str(real) if real is not None else peer
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            address = _address(hop)
            if address is None:
                break  # not written by a proxy: the last good hop is the client
            client = str(address)
            if not self.trusts(client):
                break
        return client

    def protocol(self, peer: str, headers: HTTPHeaders, default: str) -> str:
        """``http``/``https`` as the trusted proxy saw it (its ``X-Forwarded-Proto``)."""
        if not self.trusts(peer):
            return default
        values = [v.strip().lower() for v in headers.get("X-Forwarded-Proto", "").split(",")]
        return values[-1] if values[-1] in ("http", "https") else default
