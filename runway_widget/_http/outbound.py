"""The one rule for URLs someone else chose: participants' webhooks, clip copies, demo inputs.

A server that fetches or posts to a URL a participant (or a provider's reply) named can be
turned into a relay into its own network. So, for every such request:

- the URL is read strictly (http(s), an ASCII host, no user name, no backslash, no space or
  control character, and the two parsers on the way, the standard library's and urllib3's,
  must agree on scheme, host and port), and what is sent is that same URL;
- its host name is resolved once, every address is checked against `address_refusal`, and
  the connection goes to the first of them: no second lookup, so no DNS-rebinding window.
  For https the TLS name (SNI) and the certificate check stay on the host name;
- no redirect is followed, and the environment's proxies are not used (a proxy would connect
  elsewhere than to the address checked).

`OutboundPolicy` says what is allowed (``allow_private`` for a rehearsal on one machine, an
origin the operator chose such as the upstream); `outbound_transport` sends under it.
The design follows ``requests-hardened`` (pin the checked address in the connection pool's
key) with an injectable resolver and IPv4 forms hidden in IPv6 addresses also refused.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url
from urllib3.util.connection import allowed_gai_family

from .session import Reply, Session
from .transport import ConnectError, HTTPTransport, WatchedAdapter

__all__ = [
    "IPAddress",
    "OutboundPolicy",
    "OutboundRefused",
    "OutboundTarget",
    "OutboundTransport",
    "Resolver",
    "address_refusal",
    "outbound_transport",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[IPAddress]]

MAX_URL_LENGTH = 8192  # signed CDN URLs run to a few thousand characters
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PRIVATE = tuple(  # RFC 1918 and RFC 4193
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598: some clouds' metadata lives here
_RELAYS = tuple(  # forms that reach an IPv4 address through a relay or a translator
    ipaddress.ip_network(n)
    for n in ("2002::/16", "192.88.99.0/24", "64:ff9b::/96", "64:ff9b:1::/48", "2001::/32")
)  # 6to4 and its relays, NAT64 (well-known and local), Teredo
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


class OutboundRefused(ConnectError):
    """The rule forbids this URL; ``reason`` completes "the URL …" ("must not point at …").

    Nothing was sent: to a `Session`, the same as a connection that could not be made."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the URL {reason}")
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class OutboundTarget:
    """A URL that passed the rule, and the one address its connection goes to."""

    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    address: IPAddress

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def connect_host(self) -> str:
        return f"[{self.address}]" if self.address.version == 6 else str(self.address)


def address_refusal(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Which rule forbids connecting to ``address`` (None if none does).

    ``allow_private`` lets loopback and private (RFC 1918/4193) addresses through, for a
    rehearsal on one machine; link-local, CGNAT and the rest stay refused.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_refusal(inner, allow_private=allow_private)
        if address.is_site_local:
            return "a site-local address"
    if any(address.version == n.version and address in n for n in _RELAYS):
        return "an IPv4 relay or translation address (6to4, NAT64, Teredo)"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return None if allow_private else "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if any(address.version == n.version and address in n for n in _PRIVATE):
        return None if allow_private else "a private address (RFC 1918/4193)"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved or not address.is_global:
        return "a reserved or special-purpose address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (``::ffff:a.b.c.d``) or -compatible form stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(int(address))
    return None


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the order the system gives them."""
    found = socket.getaddrinfo(host, port, family=allowed_gai_family(), type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]) for *_, sockaddr in found]


@dataclasses.dataclass(frozen=True)
class OutboundPolicy:
    """What outbound requests may reach; `check` applies the rule to one URL.

    ``trusted`` holds origins (scheme, host, port) the operator chose, such as the
    upstream: their addresses are not judged, though the rest of the rule still holds.
    """

    allow_private: bool = False
    resolver: Resolver = system_resolver
    trusted: frozenset[tuple[str, str, int]] = frozenset()

    def trusting(self, url: str) -> OutboundPolicy:
        """The same policy, also trusting ``url``'s origin."""
        scheme, host, port = _parse(url)
        return dataclasses.replace(self, trusted=self.trusted | {(scheme, host, port)})

    def check(self, url: str) -> OutboundTarget:
        """Parse ``url``, resolve its host once and pick the address to connect to.

        Raises `OutboundRefused` if the URL or any address its host resolves to is refused.
        """
        scheme, host, port = _parse(url)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = list(self.resolver(host, port))
            except (OSError, UnicodeError):
                raise OutboundRefused(f"names a host that does not resolve ({host})") from None
        if not addresses:
            raise OutboundRefused(f"names a host that does not resolve ({host})")
        if (scheme, host, port) not in self.trusted:
            for address in addresses:
                rule = address_refusal(address, allow_private=self.allow_private)
                if rule is not None:
                    raise OutboundRefused(f"must not point at {rule} ({host} -> {address})")
        return OutboundTarget(scheme, host, port, addresses[0])

    def refusal(self, url: str) -> str | None:
        """Why ``url`` is refused, completing "the URL …" (None if it may be used)."""
        try:
            self.check(url)
        except OutboundRefused as exc:
            return exc.reason
        return None


def _parse(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of ``url``, read strictly (see the module's docstring)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise OutboundRefused("is not a valid URL")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise OutboundRefused("must not contain spaces or control characters")
    if "\\" in url:
        raise OutboundRefused("must not contain a backslash")
    try:
        split = urlsplit(url)
        port = split.port
        parsed = parse_url(url)
    except (ValueError, LocationParseError):
        raise OutboundRefused("is not a valid URL") from None
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not split.hostname:
        raise OutboundRefused("must be an http(s) URL with a host")
    if "@" in split.netloc:
        raise OutboundRefused("must not carry a user name or password")
    host = split.hostname
    if not split.netloc.isascii():
        raise OutboundRefused("must name its host in plain ASCII (punycode for other scripts)")
    if "%" in host:
        raise OutboundRefused("must not percent-encode its host or give an IPv6 zone")
    seen_by_urllib3 = (parsed.scheme, (parsed.host or "").lower().strip("[]"), parsed.port)
    if seen_by_urllib3 != (scheme, host, port):
        raise OutboundRefused("is read differently by different parsers")
    if port == 0:
        raise OutboundRefused("is not a valid URL")
    return scheme, host, port or _DEFAULT_PORTS[scheme]


class PinnedAdapter(WatchedAdapter):
    """Connects to the address the policy checked, never to a second lookup of the name.

    The prepared request's URL (what is sent) is checked; the pool is keyed by the checked
    address, ``Host`` carries the name, and for https the TLS server name and certificate
    check use the name too. Proxies are never used.
    """

    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        return super().send(request, stream, timeout, verify, cert, proxies={})

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        target = self.policy.check(request.url or "")
        request.headers["Host"] = target.host_header
        host_params["host"] = target.connect_host
        host_params["port"] = target.port
        if target.scheme == "https":
            pool_kwargs["server_hostname"] = target.host
            pool_kwargs["assert_hostname"] = target.host
        return host_params, pool_kwargs


class OutboundTransport(Session):
    """A `Session` whose every call follows an `OutboundPolicy`: no retries, no redirects.

    The URL given is read strictly first: ``requests`` would otherwise tidy a URL such as
    ``http://127.0.0.1:1\\@example.com/`` into another one before any check saw it.
    """

    def __init__(
        self, policy: OutboundPolicy, *, user_agent: str, timeout: float, verify: bool | str
    ) -> None:
        wire = HTTPTransport(adapter=functools.partial(PinnedAdapter, policy), trust_env=False)
        wire.session.verify = verify
        super().__init__(wire, user_agent=user_agent, timeout=timeout, follow_redirects=False)

    def call(self, method: str, url: str, **kwargs: Any) -> Reply:
        _parse(url)
        return super().call(method, url, **kwargs)

    def download(self, url: str, out: IO[bytes], **kwargs: Any) -> int:
        _parse(url)
        return super().download(url, out, **kwargs)


def outbound_transport(
    policy: OutboundPolicy, *, user_agent: str, timeout: float, verify: bool | str = True
) -> OutboundTransport:
    """An `OutboundTransport` under ``policy``; ``verify`` is ``requests``' certificate
    setting (a CA bundle's path, for a test's own CA)."""
    return OutboundTransport(policy, user_agent=user_agent, timeout=timeout, verify=verify)
