"""A server that misbehaves on purpose: real sockets on 127.0.0.1, one behaviour per route.

Each route is a function writing raw bytes to the connection, so a test can send what no
well-behaved framework would: a status line one byte a second, a body that never ends,
a redirect for a POST, ``Infinity`` where a number belongs::

    with HostileServer() as bad:
        bad.route("/fetch", trickle(json_reply({"task_id": "t", "status": "staged"})))
        client = ApiframeClient(api_key="k", base_url=bad.base_url)

Every request is recorded (method, path, headers, body) in ``seen``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = Callable[["_Handler"], None]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def response_bytes(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response, with Content-Length and ``Connection: close``."""
    lines = [f"HTTP/1.1 {status} Whatever"]
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    fields.update(headers or {})
    lines += [f"{name}: {value}" for name, value in fields.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_reply(data: Any, status: int = 200, **headers: str) -> bytes:
    return response_bytes(status, json.dumps(data).encode(), headers)


def raw_json_reply(text: str, status: int = 200) -> bytes:
    """JSON as Python writes it without allow_nan=False: Infinity and NaN pass through."""
    return response_bytes(status, text.encode())


def send(data: bytes) -> Behaviour:
    """Answer with ``data`` at once."""

    def behave(handler: _Handler) -> None:
        handler.wfile.write(data)

    return behave


def trickle(data: bytes, every: float = 0.2, *, forever: bool = False) -> Behaviour:
    """Send ``data`` one byte at a time, ``every`` seconds apart (then, if asked, spaces)."""

    def behave(handler: _Handler) -> None:
        try:
            for byte in data:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                if handler.server.closing.wait(every):
                    return
            while forever and not handler.server.closing.wait(every):
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            return

    return behave


def flood(head: bytes = b'{"tasks": [', chunk: bytes = b'{"task_id": "x"},' * 4096) -> Behaviour:
    """An endless JSON body, with no Content-Length, as fast as the client reads it."""

    def behave(handler: _Handler) -> None:
        header = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        )
        try:
            handler.wfile.write(header.encode() + head)
            while not handler.server.closing.is_set():
                handler.wfile.write(chunk)
        except OSError:
            return

    return behave


class HostileServer:
    """Routes map a path to a behaviour; unknown paths answer 404 JSON."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.seen: list[Request] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._httpd.closing = threading.Event()  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str, behaviour: Behaviour) -> None:
        self.routes[path] = behaviour

    def count(self, path: str | None = None) -> int:
        return len([r for r in self.seen if path is None or r.path == path])

    def __enter__(self) -> HostileServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.closing.set()  # type: ignore[attr-defined]
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        owner: HostileServer = self.server.owner
        owner.seen.append(
            Request(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        behaviour = owner.routes.get(path, send(json_reply({"errors": [{"msg": "no"}]}, 404)))
        self.close_connection = True
        try:
            behaviour(self)
            self.wfile.flush()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)


def elapsed(call: Callable[[], Any]) -> tuple[float, BaseException | Any]:
    """Seconds ``call`` took, and what it returned or raised."""
    start = time.monotonic()
    try:
        outcome: Any = call()
    except BaseException as exc:
        outcome = exc
    return time.monotonic() - start, outcome
