"""Connection slots over real sockets: one address flooding cannot keep anyone else out.

Different clients are different loopback source addresses (127.0.0.2, 127.0.0.3, …).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from runway_widget.gateway.connections import SlotLimits
from tests.gateway_support import demo_gateway

pytestmark = pytest.mark.timeout(120)

FLOOD, OTHER, THIRD = "127.0.0.2", "127.0.0.3", "127.0.0.4"
CLOSE_SECONDS = 10.0  # how long a connection the gateway must cut may take to be cut


def connect(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def health(sock: socket.socket) -> int:
    """One keep-alive ``GET /health`` on ``sock``; its status."""
    sock.settimeout(CLOSE_SECONDS)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a reply: {reply!r}"
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def health_from(port: int, source: str) -> int:
    with contextlib.closing(connect(port, source)) as sock:
        return health(sock)


def wait_closed(sock: socket.socket) -> None:
    """Returns once the gateway has closed ``sock`` (fails after `CLOSE_SECONDS`)."""
    sock.settimeout(CLOSE_SECONDS)
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(1) == b""


@contextlib.contextmanager
def sockets(port: int, source: str, count: int) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(connect(port, source))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_an_address_past_its_share_replaces_its_own_idle_connections(tmp_path):
    limits = SlotLimits(connections=20, per_address=8)
    with demo_gateway(tmp_path, slots=limits) as gateway, sockets(gateway.port, FLOOD, 30) as flood:
        for sock in flood[:22]:  # each one past 8 replaced the flood's oldest
            wait_closed(sock)
        assert gateway.connections_from(FLOOD) == 8
        assert [health_from(gateway.port, OTHER) for _ in range(5)] == [200] * 5
        assert health(flood[-1]) == 200  # the newest 8 are the flood's to use


def test_when_every_slot_is_taken_the_address_holding_the_most_makes_room(tmp_path):
    limits = SlotLimits(connections=10, per_address=100)
    with (
        demo_gateway(tmp_path, slots=limits) as gateway,
        contextlib.closing(connect(gateway.port, OTHER)) as keep_alive,
    ):
        assert health(keep_alive) == 200
        with sockets(gateway.port, FLOOD, 20) as flood:
            for sock in flood[:11]:  # 9 slots were free: the flood cut its own
                wait_closed(sock)
            assert health(keep_alive) == 200  # the other client's keep-alive survived
            assert health_from(gateway.port, THIRD) == 200  # a newcomer is let in too
            wait_closed(flood[11])  # ...in the flood's oldest slot
            assert gateway.connections_from(FLOOD) == 8


def test_a_connection_that_sends_no_request_is_cut_long_before_a_keep_alive(tmp_path):
    limits = SlotLimits(fresh_timeout=0.3, idle_timeout=60.0)
    with (
        demo_gateway(tmp_path, slots=limits) as gateway,
        contextlib.closing(connect(gateway.port, OTHER)) as keep_alive,
        sockets(gateway.port, FLOOD, 2) as (silent, trickle),
    ):
        assert health(keep_alive) == 200
        trickle.sendall(b"GET /health HTTP/1.1\r\n")  # a head that never ends
        wait_closed(silent)
        wait_closed(trickle)
        assert health(keep_alive) == 200


def test_a_trusted_proxy_carries_many_clients_past_the_per_address_share(tmp_path):
    limits = SlotLimits(connections=20, per_address=4)
    trusted = [f"{FLOOD}/32"]
    with (
        demo_gateway(tmp_path, slots=limits, trusted_proxies=trusted) as gateway,
        sockets(gateway.port, FLOOD, 10) as proxy,
    ):
        assert [health(sock) for sock in proxy] == [200] * 10
        assert gateway.connections_from(FLOOD) == 10
        assert [health(sock) for sock in proxy] == [200] * 10  # every one still open


def test_an_address_at_its_share_replacing_too_fast_has_the_surplus_closed_unread(tmp_path):
    limits = SlotLimits(per_address=3, replaced_per_second=0.001, replaced_burst=2)
    with demo_gateway(tmp_path, slots=limits) as gateway, sockets(gateway.port, FLOOD, 8) as flood:
        for sock in flood[:2]:  # replaced by the 4th and 5th, its burst
            wait_closed(sock)
        for sock in flood[5:]:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            wait_closed(sock)  # no reply: nothing it sent was read
        assert [health(sock) for sock in flood[2:5]] == [200] * 3  # its share is served
        assert health_from(gateway.port, OTHER) == 200  # other addresses have their own
