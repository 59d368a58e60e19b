"""Where participants reach the gateway: the addresses to put on the board.

A gateway bound to every interface (``--host 0.0.0.0``, or ``::``) is reached by this
machine's network addresses, never by 127.0.0.1, which on a participant's laptop is the
laptop itself. The address of the default route comes first (the one the room most likely
shares); then the machine's other addresses. Loopback and link-local addresses are left out.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from urllib.parse import urlsplit

from .proxies import is_loopback_host

__all__ = ["network_addresses", "only_this_machine", "participant_urls"]

WILDCARDS = ("", "0.0.0.0", "::")
# a documentation address: connecting a UDP socket to it sends nothing, but picks the route
_ROUTE_PROBE = ("192.0.2.1", 9)


def participant_urls(host: str, port: int, prefix: str, public_url: str | None) -> list[str]:
    """The base URLs a participant may use, best first (the public URL alone, if set)."""
    if public_url:
        return [public_url.rstrip("/")]
    hosts = network_addresses(ipv6=host == "::") if host in WILDCARDS else [host]
    if not hosts:  # no network at all: this machine only
        hosts = ["127.0.0.1"]
    return [f"http://{_bracketed(name)}:{port}{prefix}" for name in hosts]


def only_this_machine(urls: list[str]) -> bool:
    """True when every URL is a loopback one: no other machine can use it."""
    return all(is_loopback_host(urlsplit(url).hostname) for url in urls)


def network_addresses(*, ipv6: bool = False) -> list[str]:
    """This machine's addresses others can reach: the default route's first."""
    import psutil

    found: list[str] = []
    families = (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,)
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family in families and _reachable(entry.address):
                found.append(entry.address.split("%", 1)[0])
    first = _default_route_address()
    ordered = ([first] if first in found else []) + [a for a in found if a != first]
    return list(dict.fromkeys(ordered))


def _reachable(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return not (address.is_loopback or address.is_link_local or address.is_unspecified)


def _default_route_address() -> str | None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(_ROUTE_PROBE)
        return str(probe.getsockname()[0])
    return None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
