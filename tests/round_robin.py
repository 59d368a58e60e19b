"""A small HTTP balancer standing in for a Kubernetes Service in front of gateway replicas.

Each request goes to the next backend in turn (per request, not per connection, so one
participant's calls land on every replica), with its method, path, headers and body as they
came; the answer comes back as the backend gave it. A backend that refuses the connection
(a killed replica, before the Service drops it) is skipped: nothing was sent to it, so the
next one may take any request. Headers are passed as they are, as a Service passes packets:
the proxy in front has added ``X-Forwarded-For`` already.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
}
TIMEOUT = 120.0


class RoundRobin:
    """Serves on ``host``:``port`` from a thread of its own until `stop`."""

    def __init__(self, backends: list[str], host: str = "127.0.0.1", port: int = 0) -> None:
        self.backends = backends
        self.host, self.port = host, port
        self.served: Counter[str] = Counter()  # backend -> requests it answered
        self._turn = itertools.cycle(range(len(backends)))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> RoundRobin:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            application = Application([(r"/.*", _Forward, {"balancer": self})])
            server = HTTPServer(application, max_body_size=16 * 1024 * 1024)
            sockets = bind_sockets(self.port, self.host)
            self.port = sockets[0].getsockname()[1]
            server.add_sockets(sockets)
            ready.set()
            loop.run_forever()
            server.stop()
            loop.close()

        self._thread = threading.Thread(target=run, name="round-robin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def next_backends(self) -> list[str]:
        """Every backend, starting with the one whose turn it is."""
        first = next(self._turn)
        return self.backends[first:] + self.backends[:first]


class _Forward(RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    def initialize(self, balancer: RoundRobin) -> None:
        self.balancer = balancer

    def compute_etag(self) -> None:
        return None

    async def _forward(self) -> None:
        client = AsyncHTTPClient()
        for backend in self.balancer.next_backends():
            request = HTTPRequest(
                backend + self.request.uri,
                method=self.request.method,
                headers=self.request.headers,
                body=self.request.body if self.request.method not in ("GET", "HEAD") else None,
                follow_redirects=False,
                decompress_response=False,
                allow_nonstandard_methods=True,
                request_timeout=TIMEOUT,
            )
            try:
                response = await client.fetch(request, raise_error=False)
            except (ConnectionRefusedError, HTTPClientError, OSError):
                continue  # nothing reached this backend: the next may take the request
            if response.code == 599:  # tornado's own "no answer": a refused connection
                if isinstance(response.error, ConnectionRefusedError):
                    continue
                self.set_status(502)
                return
            self.balancer.served[backend] += 1
            self._answer(response)
            return
        self.set_status(502)

    def _answer(self, response: Any) -> None:
        self.set_status(response.code, response.reason)
        seen = set()
        for name, value in response.headers.get_all():
            if name.lower() in HOP_BY_HOP:
                continue
            if name in seen:  # Set-Cookie, say
                self.add_header(name, value)
            else:  # replaces tornado's own Content-Type, Date and Server
                seen.add(name)
                self.set_header(name, value)
        if response.code not in (204, 304) and self.request.method != "HEAD":
            self.write(response.body)

    get = head = post = put = delete = patch = options = _forward  # type: ignore[assignment]
