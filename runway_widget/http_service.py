"""A threaded HTTP server that runs in the background and stops without leaving threads.

The demo backend and the webhook receiver both serve HTTP from inside a notebook kernel,
where a leaked thread outlives the cell that made it. This server remembers every open
connection, so `stop` can cut idle keep-alives and join each connection's thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger("runway_widget")


class BackgroundHTTPServer(ThreadingHTTPServer):
    """Serves ``handler`` for ``owner`` (reachable from handlers as ``self.server.owner``)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # a burst of jobs may all call at once

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        owner: Any,
        name: str,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.owner = owner
        self.name = name
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> BackgroundHTTPServer:
        """Serve from a named daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut open connections and join every thread (but the caller's)."""
        self.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)
        self.server_close()
        self._close_connections(timeout)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self.name}-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("%s: a connection ended with an error", self.name, exc_info=True)

    def _close_connections(self, timeout: float) -> None:
        with self._connections_lock:
            open_now = dict(self._connections)
        open_now.pop(threading.current_thread(), None)  # a handler may stop its own server
        for sock in open_now.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("%s: a connection is still busy after stop()", self.name)
