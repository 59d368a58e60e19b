"""Talking to a local server below any HTTP library: raw bytes, idle connections by the hundred."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from waiting import wait_for


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


def ended_by_server(sock: socket.socket) -> bool:
    """True once the server has ended the connection (EOF or reset, after any reply such as
    a 503); False while it is still open. Never blocks."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def peak_thread_growth(before: int, flood: list[socket.socket], kept: int) -> int:
    """The most threads above ``before`` seen until the server has taken in the whole
    ``flood``: every connection of it but the ``kept`` it still serves has been ended."""
    peak = 0
    ended: set[socket.socket] = set()

    def taken_in() -> bool:
        nonlocal peak
        peak = max(peak, threading.active_count() - before)
        ended.update(sock for sock in flood if sock not in ended and ended_by_server(sock))
        return len(ended) >= len(flood) - kept

    wait_for(taken_in, f"the server to end all but {kept} of {len(flood)} idle connections", 10)
    return max(peak, threading.active_count() - before)


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
