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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_server import LocalServer, QuietHandler

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
                if handler.owner.closing.wait(every):
                    return
            while forever and not handler.owner.closing.wait(every):
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
            while not handler.owner.closing.is_set():
                handler.wfile.write(chunk)
        except OSError:
            return

    return behave


class HostileServer(LocalServer):
    """Routes map a path to a behaviour; unknown paths answer 404 JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, Behaviour] = {}
        self.seen: list[Request] = []

    def route(self, path: str, behaviour: Behaviour) -> None:
        self.routes[path] = behaviour

    def count(self, path: str | None = None) -> int:
        return len([r for r in self.seen if path is None or r.path == path])


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.read_request_body()
        path = self.path.split("?", 1)[0]
        owner: HostileServer = self.owner
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


HostileServer.handler = _Handler


def elapsed(call: Callable[[], Any]) -> tuple[float, BaseException | Any]:
    """Seconds ``call`` took, and what it returned or raised."""
    start = time.monotonic()
    try:
        outcome: Any = call()
    except BaseException as exc:
        outcome = exc
    return time.monotonic() - start, outcome
