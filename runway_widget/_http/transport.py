"""One HTTP exchange, and the seam under every call the package makes.

A `Transport` sends one `Request` and hands back the `Response` with its body still to be
read. It never retries, never follows a redirect and never enforces a deadline: that is the
work of the `runway_widget._http.session.Session` above it, which therefore runs the same
over real connections (`HTTPTransport`) and in memory (`MockTransport`, in the spirit of
httpx's). A failure on the wire is a `TransportError` that says whether the request can
have reached the server.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from ..errors import shorten
from .deadlines import current_deadline

__all__ = [
    "ConnectError",
    "ConnectionDropped",
    "HTTPTransport",
    "MockTransport",
    "ReadTimeout",
    "Request",
    "Response",
    "Transport",
    "TransportError",
    "WatchedAdapter",
]

_CHUNK = 64 * 1024


class TransportError(Exception):
    """No usable answer came over the wire; ``sent`` False: the request never left."""

    sent = True


class ConnectError(TransportError):
    """No connection (refused, no such host, TLS failed, no answer to connect): not sent."""

    sent = False


class ReadTimeout(TransportError):
    """Sent, and no byte of an answer within the read timeout."""


class ConnectionDropped(TransportError):
    """Sent, and the connection closed or broke before the answer was whole."""


@dataclass(frozen=True)
class Request:
    """One request as it goes on the wire; ``timeout`` bounds each read of its answer."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""
    timeout: float = 30.0

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Response:
    """A status, its headers, and a body read in chunks (`iter_bytes`) until `close`.

    Built by a transport, or by a `MockTransport` handler: ``content`` is the whole body or
    an iterable of chunks (one that raises a `TransportError` breaks off mid-body);
    ``json`` encodes a body. A whole body announces its length, as servers do.
    """

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] = b"",
        *,
        json: Any = None,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        self.status = status
        self.headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers or {})
        if json is not None:
            content = jsonlib.dumps(json).encode()
            self.headers.setdefault("Content-Type", "application/json")
        if isinstance(content, (bytes, bytearray)):
            self.headers.setdefault("Content-Length", str(len(content)))
            content = [bytes(content)] if content else []
        self._chunks = iter(content)
        self._on_close = on_close

    def __repr__(self) -> str:
        return f"<Response {self.status}>"

    def iter_bytes(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()


class Transport:
    """Sends one request and returns its response, or raises a `TransportError`."""

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (nothing to release by default)."""


class MockTransport(Transport):
    """A transport in memory: ``handler(request)`` returns the response or raises.

    For tests and offline use; everything above it (retries, deadlines, caps, errors)
    runs as it does over the network.
    """

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self.handler = handler

    def handle(self, request: Request) -> Response:
        return self.handler(request)


class _WatchedHTTPConnection(HTTPConnection):
    """Hands the running call's deadline the connection, then the socket it sent on."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = current_deadline()
        if deadline is not None:
            deadline.watch(self)
        super().request(*args, **kwargs)
        if deadline is not None:
            deadline.hold(self.sock)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same, over TLS."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """An adapter whose connections report to the running call's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


class HTTPTransport(Transport):
    """Real connections: a ``requests`` session, one attempt per request, no redirects.

    Each connection reports its socket to the running call's `CallDeadline`, which can then
    cut a read blocked anywhere. ``adapter`` makes the adapter (a `WatchedAdapter` unless the
    caller connects its own way, see ``outbound``); ``trust_env`` takes proxies and
    certificates from the environment, as ``requests`` does.
    """

    def __init__(
        self, *, adapter: Callable[..., HTTPAdapter] = WatchedAdapter, trust_env: bool = True
    ) -> None:
        self.session = requests.Session()
        self.session.trust_env = trust_env
        once = Retry(total=0, redirect=0, raise_on_redirect=False, raise_on_status=False)
        self._adapter = adapter(max_retries=once)
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, self._adapter)
        self._environment: dict[str, dict[str, Any]] = {}

    def handle(self, request: Request) -> Response:
        try:
            prepared = self.session.prepare_request(
                requests.Request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=request.content or None,
                )
            )
            settings = self._environment_settings(prepared.url or request.url)
            reply = self._adapter.send(prepared, timeout=request.timeout, **settings)
        except TransportError:  # an adapter's own refusal (see ``outbound``)
            raise
        except requests.RequestException as exc:
            raise wire_error(exc, request.timeout) from None
        return Response(reply.status_code, reply.headers, _body(reply, request.timeout),
                        on_close=reply.close)

    def close(self) -> None:
        self.session.close()
        self._adapter.close()

    def _environment_settings(self, url: str) -> dict[str, Any]:
        """Proxies and certificates from the environment, read once per origin: reading
        them costs more than a loopback call, and every call goes to the same few hosts."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        settings = self._environment.get(origin)
        if settings is None:
            settings = self.session.merge_environment_settings(url, {}, True, None, None)
            settings["stream"] = True  # the body is read in chunks, under the call's cap
            self._environment[origin] = settings
        return settings


def _body(reply: requests.Response, timeout: float) -> Iterator[bytes]:
    try:
        yield from reply.iter_content(_CHUNK)
    except requests.RequestException as exc:
        raise wire_error(exc, timeout) from None


def wire_error(exc: requests.RequestException, timeout: float) -> TransportError:
    """What went wrong on the wire, in a few words (not yet scrubbed of secrets)."""
    reason = _root_cause(exc)
    if isinstance(exc, requests.ConnectTimeout) or type(reason) is ConnectTimeoutError:
        return ConnectError(f"could not connect within {timeout:g}s")
    if isinstance(reason, NewConnectionError):
        return ConnectError("could not connect: " + shorten(str(reason).split(": ", 1)[-1], 200))
    unsent = (requests.exceptions.SSLError, requests.exceptions.InvalidURL,
              requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)
    if isinstance(exc, unsent):
        return ConnectError(f"{type(reason).__name__}: {shorten(reason, 200)}")
    if isinstance(exc, requests.Timeout) or isinstance(reason, ReadTimeoutError):
        return ReadTimeout(f"no answer within {timeout:g}s")
    if isinstance(reason, ProtocolError):
        detail = reason.args[1] if len(reason.args) > 1 else reason
        return ConnectionDropped(f"the connection was dropped ({shorten(detail, 200)})")
    return TransportError(f"{type(reason).__name__}: {shorten(reason, 200)}")


def _root_cause(exc: BaseException) -> BaseException:
    """The urllib3 error under a requests exception (unwrapping MaxRetryError)."""
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    return cause if isinstance(cause, BaseException) else exc
