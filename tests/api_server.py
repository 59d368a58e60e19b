"""The fake service (`fake_api.FakeApi`) served over real HTTP on 127.0.0.1.

For what needs a socket: a subprocess (the CLI), a browser, a gateway's upstream, replies
that really arrive late or break off. Everything else runs the same fake in memory.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from fake_api import TEST_API_KEY, FakeApi, Reply, Seen, error
from local_server import LocalServer, QuietHandler

__all__ = ["TEST_API_KEY", "ApiServer", "Reply", "Seen", "error"]


class ApiServer(LocalServer, FakeApi):
    """A `FakeApi` on a free loopback port (its state and controls are the fake's)."""

    def __init__(self, api_key: str | None = TEST_API_KEY) -> None:
        LocalServer.__init__(self)
        FakeApi.__init__(self, api_key, base_url=self.base_url)


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        api: ApiServer = self.owner
        seen = Seen(
            method=self.command,
            path=urlsplit(self.path).path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.read_request_body(),
            at=time.monotonic(),
        )
        reply = api.receive(seen)
        if reply.delay:
            api.closing.wait(reply.delay)
        if reply.drop:
            self.close_connection = True
            return
        self._send(reply, seen)

    def _send(self, reply: Reply, seen: Seen) -> None:
        data, content_type = reply.payload(seen)
        try:
            self.send_response(reply.status)
            headers: dict[str, Any] = {"Content-Type": content_type, **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if reply.cut_after is not None:
                self.wfile.write(data[: reply.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


ApiServer.handler = _Handler
