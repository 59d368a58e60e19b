"""Talking to a local server below any HTTP library: raw bytes, idle connections by the hundred."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that never send a byte, closed on exit."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def peak_thread_growth(before: int, seconds: float = 2.0) -> int:
    """The most threads above ``before`` seen while the server accepts its backlog."""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, threading.active_count() - before)
        time.sleep(0.02)
    return peak


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send bytes as they are (no HTTP library tidying them up) and return the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1."), f"no HTTP reply: {reply[:80]!r}"
    return int(reply.split(b" ", 2)[1])
