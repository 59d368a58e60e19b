"""The peers a gateway meets in a room, hostile or not: real sockets on loopback.

Shared by the acceptance suite (``tests/acceptance``) and the load benchmark
(``benchmarks/gateway_load.py``). Different clients are different 127.x source addresses.

- `ArrivalLog`: a participant's webhook receiver that answers at once and notes when each
  push arrived (``time.time()``, comparable with the demo's `finished_at`).
- `BlackHole`: a receiver that takes every connection and never answers.
- `trickling_clip`: a clip host (a `HostileServer`) that sends one byte every ``every`` seconds.
- `inside_host`: a host on the gateway's own machine answering a webhook, a clip and an image
  at once: what no participant or provider may reach through the gateway.
- `IdleSockets`: connections from one source address that never send a byte; those the
  server cuts are opened again by `refill`.
- `guess_joins`: join codes, each from a new address forged in ``X-Forwarded-For``/``X-Real-IP``.
- `MALFORMED_BODIES`: request bodies a server must answer with 400, never a 500.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hostile_server import HostileServer, json_reply, response_bytes, send, trickle

from runway_widget.demo.samples import sample_path

CLIP_PATH = "/clip.mp4"
CLIP = b"\0\0\0\x18ftypmp42" + bytes(2000)  # enough of an MP4 for a copy to be kept
CONNECT_SECONDS = 2.0

# bodies no JSON object of valid text can be read from (the README's "malformed input")
MALFORMED_BODIES = (
    b"[" * 50_000,  # nested too deep to parse
    b'{"prompt": "\\ud83c", "generation_type": "text2video"}',  # a lone surrogate
    b'{"task_id": "\\udfff"}',
    b'{"prompt": "\xff\xfe not utf-8"}',
    b'{"prompt": "a", "duration": NaN}',
    b'{"prompt": "a", "duration": 1e999}',
    b'["not", "an", "object"]',
    b"{",
)


@dataclass(frozen=True)
class Arrival:
    path: str
    task_id: str | None
    status: str | None
    at: float  # time.time() when the push was read


class ArrivalLog:
    """Answers every POST with 200 at once and records it; ``url(name)`` is one receiver."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), _ArrivalHandler)
        self._httpd.daemon_threads = True
        self._httpd.log = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def add(self, arrival: Arrival) -> None:
        with self._lock:
            self.arrivals.append(arrival)

    def first(self, status: str) -> dict[str, Arrival]:
        """The first push of each task that carried ``status``, by task id."""
        with self._lock:
            found: dict[str, Arrival] = {}
            for arrival in self.arrivals:
                if arrival.status == status and arrival.task_id not in found:
                    found[str(arrival.task_id)] = arrival
            return found

    def __enter__(self) -> ArrivalLog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _ArrivalHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        at = time.time()
        try:
            task = json.loads(body)
        except ValueError:
            task = {}
        task = task if isinstance(task, dict) else {}
        self.server.log.add(Arrival(self.path, task.get("task_id"), task.get("status"), at))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class BlackHole:
    """A TCP listener that accepts every connection and never reads or answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0), backlog=128)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}/hook"

    @property
    def taken(self) -> int:
        """Connections accepted so far (each a push that will never be answered)."""
        return len(self._held)

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if ready:
                connection, _ = self._listener.accept()
                self._held.append(connection)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for connection in [*self._held, self._listener]:
            connection.close()


@contextlib.contextmanager
def trickling_clip(every: float = 1.0, size: int = 1_000_000) -> Iterator[HostileServer]:
    """A host whose ``CLIP_PATH`` is an MP4 of ``size`` bytes sent a byte every ``every`` s."""
    clip = response_bytes(200, b"\0" * size, {"Content-Type": "video/mp4"})
    with HostileServer() as host:
        host.route(CLIP_PATH, trickle(clip, every))
        yield host


@contextlib.contextmanager
def inside_host() -> Iterator[HostileServer]:
    """``/hook`` (a receiver), `CLIP_PATH` (a clip) and ``/image.jpg``, answered at once."""
    image = sample_path("landscape.jpg").read_bytes()
    with HostileServer() as host:
        host.route("/hook", send(json_reply({"ok": True})))
        host.route(CLIP_PATH, send(response_bytes(200, CLIP, {"Content-Type": "video/mp4"})))
        host.route("/image.jpg", send(response_bytes(200, image, {"Content-Type": "image/jpeg"})))
        yield host


def room_for_sockets(count: int) -> None:
    """Let this process (and those it starts) hold ``count`` more descriptors, if it may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 4096
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


class IdleSockets:
    """``count`` connections from ``source`` to ``port`` on loopback that never send a byte.

    `refill` opens again those the server has cut (it closed them, or they could not be
    opened), so the pressure stays on; ``cut`` counts them.
    """

    def __init__(self, port: int, source: str, count: int) -> None:
        room_for_sockets(count)
        self.port, self.source, self.count = port, source, count
        self.sockets: list[socket.socket | None] = [None] * count
        self.cut = 0
        self.refused = 0

    def refill(self) -> int:
        """Open every missing or cut connection; returns how many are open now."""
        for i, sock in enumerate(self.sockets):
            if sock is not None and _closed_by_peer(sock):
                sock.close()
                sock, self.cut = None, self.cut + 1
            if sock is None:
                sock = self._open()
            self.sockets[i] = sock
        return sum(sock is not None for sock in self.sockets)

    def closed(self) -> int:
        """How many of them the server has closed (without opening them again)."""
        return sum(sock is None or _closed_by_peer(sock) for sock in self.sockets)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(
                ("127.0.0.1", self.port), timeout=CONNECT_SECONDS, source_address=(self.source, 0)
            )
        except OSError:
            self.refused += 1
            return None
        sock.setblocking(False)  # peeking at it never waits
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            if sock is not None:
                sock.close()
        self.sockets = [None] * self.count

    def __enter__(self) -> IdleSockets:
        self.refill()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # open, nothing to read: still idle
    except OSError:
        return True  # reset, or never connected


def client(port: int, source: str, timeout: float = 10.0) -> http.client.HTTPConnection:
    """A kept-alive HTTP connection to ``port`` on loopback from the address ``source``."""
    return http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0)
    )


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """One request on a kept-alive connection (reopened once if the server closed it)."""
    for attempt in (1, 2):
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            response.read()
            return response.status
        except (ConnectionError, http.client.HTTPException):
            connection.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def forged_join(connection: http.client.HTTPConnection, code: str, n: int) -> int:
    """Join with ``code``, claiming through ``X-Forwarded-For`` and ``X-Real-IP`` to come
    from the ``n``-th of many addresses; returns the status."""
    forged = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    headers = {"Content-Type": "application/json", "X-Forwarded-For": forged, "X-Real-IP": forged}
    body = json.dumps({"code": code, "name": f"guess-{n}"}).encode()
    return exchange(connection, "POST", "/join", body, headers)


def guess_joins(port: int, source: str, codes: list[str]) -> list[int]:
    """Try each of ``codes`` from ``source``, each from a new forged address; the statuses."""
    connection = client(port, source)
    try:
        return [forged_join(connection, code, n) for n, code in enumerate(codes)]
    finally:
        connection.close()


def post_malformed(port: int, source: str, path: str, token: str | None) -> list[int]:
    """Post each of `MALFORMED_BODIES` to ``path``; returns the statuses."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    connection = client(port, source)
    try:
        return [exchange(connection, "POST", path, body, headers) for body in MALFORMED_BODIES]
    finally:
        connection.close()
