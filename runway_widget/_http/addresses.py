"""Whether a URL is on a loopback backend, and whether two URLs share one origin."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from ..models import is_http_url

__all__ = ["is_loopback_url", "is_own_loopback_url", "is_same_origin"]


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` (or below it) or a loopback address."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_own_loopback_url(base_url: str, url: str | None) -> bool:
    """True when ``url`` is an http(s) URL of ``base_url``'s origin and that is loopback."""
    return is_loopback_url(base_url) and is_same_origin(base_url, url)


def is_same_origin(base_url: str, url: str | None) -> bool:
    """True when ``url`` is an http(s) URL of ``base_url``'s origin (scheme, host, port)."""
    if not is_http_url(url):
        return False
    origin = _origin(urlsplit(base_url))
    return origin[2] != -1 and origin == _origin(urlsplit(str(url)))


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    """Scheme, host and port (the scheme's default when absent) of a split URL."""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return (scheme, "", -1)
    default = {"http": 80, "https": 443}.get(scheme)
    return (scheme, (parts.hostname or "").lower(), port if port is not None else default)
