"""A bounded threaded HTTP server that runs in the background and stops without leaving threads.

The demo backend and the webhook receiver both serve HTTP from inside a notebook kernel,
where a leaked thread outlives the cell that made it and anyone who can reach the port may
open connections. So this server:

- caps its connections (`ConnectionTable`): idle keep-alives and half-sent requests make room
  for new ones, oldest first, so a normal request is answered beside hundreds of idle
  connections; when every slot is busy working, a newcomer gets 503 with ``Retry-After``;
- gives every request an overall deadline from its first byte to its last (a header sent a
  byte a second is cut off), and every idle connection one too;
- parses ``Content-Length`` strictly (`content_length`), so handlers answer 4xx to junk;
- remembers every connection, so `stop` cuts them all and joins each thread.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import selectors
import socket
import threading
import time
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from .limits import ConnectionTable, Phase

__all__ = ["BackgroundHTTPServer", "BoundedRequestHandler", "content_length", "presented_key"]

logger = logging.getLogger("runway_widget")

DEFAULT_MAX_CONNECTIONS = 64
_LENGTH_CEILING = 10**18  # any Content-Length above a server's cap is as good as this one
_DISCARD_LIMIT = 128 * 1024 * 1024
_DRAIN_BYTES = 4 * 1024 * 1024
_DRAIN_SECONDS = 1.0
_TICK = 0.1  # seconds between looks for connections past their deadline
_MAX_REFUSALS_CLOSING = 256
_BUSY_BODY = b'{"errors": [{"msg": "the server is busy: try again in a moment"}]}'
_BUSY_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _BUSY_BODY
)


def content_length(headers: Message) -> int | None:
    """The declared body length: None when absent; ValueError when malformed or conflicting.

    Only ASCII digits count ("²" and "-5" are malformed); a length too long to matter is
    clamped to 10**18 rather than parsed, so no cap check can overflow or raise.
    """
    values = {value.strip() for value in headers.get_all("Content-Length") or []}
    if not values:
        return None
    if len(values) != 1:
        raise ValueError("conflicting Content-Length headers")
    raw = values.pop()
    if not re.fullmatch(r"[0-9]+", raw):
        raise ValueError("invalid Content-Length")
    digits = raw.lstrip("0") or "0"
    return _LENGTH_CEILING if len(digits) > 18 else int(digits)


def presented_key(header: str | None) -> str | None:
    """The key in an ``Authorization`` header: raw, as APIFRAME documents it, or ``Bearer <key>``.

    APIFRAME's own SDK sends the Bearer form; every server of this package accepts both.
    """
    if header is None:
        return None
    value = header.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    return value or None


class BoundedRequestHandler(BaseHTTPRequestHandler):
    """A request handler that reports its phase to the server's `ConnectionTable`.

    A body must come with one valid ``Content-Length`` (kept in `body_length`): chunked or
    malformed framing is answered (411/400, through `send_error_reply`) before the
    subclass's ``do_*`` runs. Subclasses read a body only through `read_body` (or
    `discard_body`), which ends the request's reading phase; a request without a body is
    handled as soon as its head is in.
    """

    server: BackgroundHTTPServer
    body_length: int | None = None  # the checked Content-Length; None when there is none
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def handle_one_request(self) -> None:
        table = self.server.connections
        table.enter(self.connection, Phase.WAITING)
        try:
            # Blocks until the first byte, the idle deadline or EOF; the byte stays unread.
            started = cast(io.BufferedReader, self.rfile).peek(1)
        except OSError:
            started = b""
        if not started:
            self.close_connection = True
            return
        table.enter(self.connection, Phase.READING)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if "Transfer-Encoding" in self.headers:
            return self._refuse_framing(
                HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks"
            )
        try:
            self.body_length = content_length(self.headers)
        except ValueError:
            return self._refuse_framing(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        if not self.body_length:
            self.server.connections.enter(self.connection, Phase.HANDLING)
        return True

    def send_error_reply(self, status: HTTPStatus, message: str) -> None:
        """Answer a request refused before ``do_*`` ran; subclasses answer in their format."""
        self.send_error(status, message)

    def drain_before_close(self) -> None:
        """Read and drop, briefly, what the sender still sends, then let the connection close.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the reply before the sender reads it. The bytes are thrown away, never kept.
        """
        self.close_connection = True
        deadline = time.monotonic() + _DRAIN_SECONDS
        left = _DRAIN_BYTES
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                chunk = self.connection.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _refuse_framing(self, status: HTTPStatus, message: str) -> bool:
        self.close_connection = True  # where the body ends is unknown
        self.server.connections.enter(self.connection, Phase.HANDLING)
        self.send_error_reply(status, message)
        self.drain_before_close()
        return False

    def read_body(self, length: int) -> bytes:
        """Up to ``length`` bytes of body: fewer if the sender stops or its deadline passes."""
        data = self._read(length)
        self.server.connections.enter(self.connection, Phase.HANDLING)
        return data

    def discard_body(self, length: int) -> None:
        """Read and drop a body we will not use, so the reply reaches the sender."""
        if length > _DISCARD_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            chunk = self._read(min(length, 65536))  # still under the request's deadline
            if not chunk:
                self.close_connection = True
                break
            length -= len(chunk)
        self.server.connections.enter(self.connection, Phase.HANDLING)

    def _read(self, length: int) -> bytes:
        try:
            return self.rfile.read(length) if length > 0 else b""
        except OSError:
            return b""


class BackgroundHTTPServer(ThreadingHTTPServer):
    """Serves ``handler`` for ``owner`` (reachable from handlers as ``self.server.owner``).

    ``max_connections`` live connections at most (and as many more on their way out);
    ``idle_timeout`` seconds for a connection to start a request, ``request_timeout`` for a
    request to arrive whole once it has begun.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # a burst of jobs may all call at once

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BoundedRequestHandler],
        *,
        owner: Any,
        name: str,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = 30.0,
        request_timeout: float = 10.0,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.owner = owner
        self.name = name
        self.connections: ConnectionTable[socket.socket] = ConnectionTable(
            max_connections, idle_timeout=idle_timeout, request_timeout=request_timeout
        )
        self.refused = 0
        self._refused_closing: list[tuple[socket.socket, float]] = []  # serve thread only
        self._connection_threads: dict[socket.socket, threading.Thread] = {}
        self._connection_threads_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()  # closed by server_close
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> BackgroundHTTPServer:
        """Serve from a named daemon thread."""
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut open connections and join every thread (but the caller's)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        if self._thread is not None:
            self._thread.join(timeout)
        self.server_close()
        for sock, _ in self._refused_closing:
            sock.close()
        self._refused_closing = []
        self._close_connections(timeout)

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _serve(self) -> None:
        """socketserver's accept loop, with a wake-up socket: `stop` ends it at once, not at
        its next tick (every stop of a demo backend or a receiver used to wait for one)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select(_TICK)
                if self._stopping.is_set():
                    return
                if any(key.fileobj is self for key, _ in ready):
                    self._accept()
                self.service_actions()

    def _accept(self) -> None:
        """One waiting connection to `process_request`, as socketserver hands it on."""
        try:
            request, client_address = self.get_request()
        except OSError:
            return
        try:
            self.process_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        evicted = self.connections.admit(request)
        if evicted is None:
            self._refuse(request)
            return
        for connection in evicted:
            _cut(connection)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self.name}-connection",
            daemon=True,
        )
        with self._connection_threads_lock:
            # Ended threads are forgotten here, not by themselves: a thread is still alive
            # in its last lines, and `stop` must be able to join it until it is not.
            self._connection_threads = {
                sock: worker
                for sock, worker in self._connection_threads.items()
                if worker.is_alive()
            }
            self._connection_threads[request] = thread
        thread.start()

    def service_actions(self) -> None:
        """Between polls of the accept loop: cut connections past their deadline."""
        for connection in self.connections.overdue():
            _cut(connection)
        self._finish_refusals()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.connections.remove(request)

    def _refuse(self, request: socket.socket) -> None:
        """Every slot is busy working: a short 503 from the accept loop, without a thread.

        The socket then closes gently (`_finish_refusals`): closed with the request still
        unread, it would send a reset that can destroy the 503 before the client reads it.
        """
        self.refused += 1
        logger.debug("%s: connection refused, %d busy", self.name, len(self.connections))
        try:
            request.setblocking(False)
            request.send(_BUSY_REPLY)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        if len(self._refused_closing) >= _MAX_REFUSALS_CLOSING:
            request.close()
            return
        self._refused_closing.append((request, time.monotonic() + _DRAIN_SECONDS))

    def _finish_refusals(self) -> None:
        """Read what refused clients still send (non-blocking) until they close or time is up."""
        open_still = []
        now = time.monotonic()
        for sock, deadline in self._refused_closing:
            if _drained(sock) or now >= deadline:
                sock.close()
            else:
                open_still.append((sock, deadline))
        self._refused_closing = open_still

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("%s: a connection ended with an error", self.name, exc_info=True)

    def _close_connections(self, timeout: float) -> None:
        with self._connection_threads_lock:
            open_now = dict(self._connection_threads)
        me = threading.current_thread()  # a handler may stop its own server
        open_now = {sock: thread for sock, thread in open_now.items() if thread is not me}
        for sock in open_now:
            _cut(sock)
        deadline = time.monotonic() + timeout
        for thread in open_now.values():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("%s: a connection is still busy after stop()", self.name)


def _drained(sock: socket.socket) -> bool:
    """True once the peer has closed (or failed); reads at most a few chunks, never blocks."""
    try:
        for _ in range(16):
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    return False


def _cut(connection: socket.socket) -> None:
    """End a connection from outside its thread: its blocked read returns at once."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
