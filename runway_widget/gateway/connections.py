"""The gateway's HTTP server: connection slots shared out per client address, proxies named.

Every connection takes a slot in a `ConnectionTable`, owned by its peer's address (an IPv6
/64 counts as one). When the table is full, the address holding the most slots makes room
from its own idle connections; and one address never holds more than ``per_address`` (its
newest replaces its oldest idle one), so an address opening thousands of idle sockets only
competes with itself while everyone else is served. A connection that has not sent a whole
request head within ``fresh_timeout`` is cut, much sooner than a real client's keep-alive
(``idle_timeout``). Connections from a trusted proxy carry many clients: they have no
per-address cap, and the request's ``remote_ip`` is the client the proxy names
(`TrustedProxies`); from anyone else, proxy headers are ignored. An address holding its whole
share may replace its connections only so fast (``replaced_per_second``, in bursts of
``replaced_burst``): past that, a new one is closed as soon as it is accepted, before any
HTTP is read, so reconnecting as fast as it is cut costs the server next to nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from tornado import httputil
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream

from .._server.limits import ConnectionTable, Phase
from .proxies import TrustedProxies, client_network
from .ratelimit import MemoryBuckets

__all__ = ["FairHTTPServer", "SlotLimits"]


@dataclass(frozen=True)
class SlotLimits:
    """How many connections, how many per address, and how long each phase may last."""

    connections: int = 2000
    per_address: int = 500  # a room behind one NAT address still fits
    fresh_timeout: float = 10.0  # from connecting to a whole request head
    idle_timeout: float = 75.0  # a keep-alive between requests
    body_timeout: float = 30.0  # from a request's head to the end of its body
    replaced_per_second: float = 50.0  # an address at its share: new ones replacing its own
    replaced_burst: int = 200  # ...and at once

    def table(self) -> ConnectionTable[IOStream]:
        return ConnectionTable(
            self.connections,
            per_owner=self.per_address,
            idle_timeout=self.idle_timeout,
            request_timeout=self.body_timeout,
            fresh_timeout=self.fresh_timeout,
        )


class FairHTTPServer(HTTPServer):
    """tornado's `HTTPServer`, with fair connection slots and trusted proxies only.

    Built like `HTTPServer`, plus ``slots=SlotLimits(…)`` and ``proxies=TrustedProxies(…)``.
    Call `cut_overdue` periodically (the gateway does, every second).
    """

    def initialize(  # type: ignore[override]
        self,
        *args: Any,
        slots: SlotLimits,
        proxies: TrustedProxies,
        **kwargs: Any,
    ) -> None:
        kwargs.update(
            xheaders=False,  # never: it believes any client's X-Forwarded-For
            idle_connection_timeout=slots.idle_timeout,
            body_timeout=slots.body_timeout,
        )
        super().initialize(*args, **kwargs)
        self.slots = slots.table()
        self.proxies = proxies
        self._limits = slots
        self.replacements = MemoryBuckets()  # connections are this process's own: never shared

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        peer = str(address[0]) if address else ""
        capped, owner = not self.proxies.trusts(peer), client_network(peer)
        if capped and self._replacing_too_fast(owner):
            stream.close()  # nothing is read from it, and none of the owner's is cut for it
            return
        evicted = self.slots.admit(stream, owner, capped=capped)
        if evicted is None:
            stream.close()
            return
        for other in evicted:
            self._cut(other)
        super().handle_stream(stream, address)

    def _replacing_too_fast(self, owner: str) -> bool:
        """The owner holds its whole share and has replaced its connections too often."""
        share = self.slots.per_owner
        full = share is not None and self.slots.held_by(owner) >= share
        if not full:
            return False
        rate, burst = self._limits.replaced_per_second, self._limits.replaced_burst
        taken, _ = self.replacements.take(owner, rate, burst, 1)
        return taken == 0

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        stream = _stream(server_conn)
        self.slots.enter(stream, Phase.WAITING)  # a new request may come: after one, idle
        delegate = super().start_request(server_conn, request_conn)
        return _Observed(delegate, self, stream, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.slots.remove(_stream(server_conn))
        super().on_close(server_conn)

    def cut_overdue(self) -> None:
        """Close connections idle, silent or half-sent past their deadline."""
        for stream in self.slots.overdue():
            self._cut(stream)

    def _cut(self, stream: IOStream) -> None:
        """Close at once: its descriptor is free now, so its slot is too (not when it ends)."""
        stream.close()
        self.slots.remove(stream)


def _stream(server_conn: object) -> IOStream:
    assert isinstance(server_conn, HTTP1ServerConnection)
    stream: IOStream = server_conn.stream
    return stream


class _Observed(httputil.HTTPMessageDelegate):
    """Reports a request's phases to the slot table; applies a trusted proxy's headers."""

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        server: FairHTTPServer,
        stream: IOStream,
        request_conn: httputil.HTTPConnection,
    ) -> None:
        self.delegate = delegate
        self.server = server
        self.stream = stream
        self.context: Any = getattr(request_conn, "context", None)
        self._original: tuple[str, str] | None = None

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self.server.slots.enter(self.stream, Phase.READING)
        context, proxies = self.context, self.server.proxies
        if context is not None and proxies.trusts(context.remote_ip):
            peer, protocol = context.remote_ip, context.protocol
            self._original = (peer, protocol)
            context.remote_ip = proxies.client(peer, headers)
            context.protocol = proxies.protocol(peer, headers, protocol)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.server.slots.enter(self.stream, Phase.HANDLING)
        try:
            self.delegate.finish()
        finally:
            self._restore()

    def on_connection_close(self) -> None:
        try:
            self.delegate.on_connection_close()
        finally:
            self._restore()

    def _restore(self) -> None:
        """The request keeps its client; the connection's next request starts from its peer."""
        if self._original is not None:
            self.context.remote_ip, self.context.protocol = self._original
            self._original = None
