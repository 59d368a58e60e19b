"""The bounded background HTTP server: its bookkeeping on a fake clock, then real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from email.message import Message

import pytest
import requests
from raw_sockets import idle_connections, peak_thread_growth

from runway_widget._server.limits import ConnectionTable, Phase
from runway_widget._server.service import (
    BackgroundHTTPServer,
    BoundedRequestHandler,
    content_length,
    presented_key,
)
from tests.fake_clock import FakeClock


def table(limit: int = 3, clock: FakeClock | None = None) -> ConnectionTable[str]:
    return ConnectionTable(limit, idle_timeout=30, request_timeout=10, clock=clock or FakeClock())


# -- the table, on a fake clock ------------------------------------------------------------------


def test_admits_up_to_the_limit_without_cutting_anyone():
    connections = table(3)
    assert [connections.admit(key) for key in "abc"] == [[], [], []]
    assert len(connections) == 3
    assert connections.phase("a") is Phase.WAITING


def test_when_full_the_oldest_waiting_connection_makes_room_first():
    clock = FakeClock()
    connections = table(3, clock)
    for key in "abc":
        connections.admit(key)
        clock.advance(1)
    connections.enter("a", Phase.HANDLING)
    connections.enter("b", Phase.READING)
    assert connections.admit("d") == ["c"]  # waiting beats reading, however new
    assert connections.admit("e") == ["d"]
    connections.enter("e", Phase.HANDLING)
    assert connections.admit("f") == ["b"]  # then the oldest reading one
    assert len(connections) == 3


def test_a_real_clients_keep_alive_outlives_connections_that_never_sent_a_request():
    clock = FakeClock()
    connections = table(3, clock)
    connections.admit("client")
    for phase in (Phase.READING, Phase.HANDLING, Phase.WAITING):  # one request, then idle
        connections.enter("client", phase)
    clock.advance(1)
    connections.admit("scan-1")
    clock.advance(1)
    connections.admit("scan-2")
    assert connections.admit("scan-3") == ["scan-1"]  # newer than the client, cut first
    assert connections.admit("scan-4") == ["scan-2"]
    for key in ("scan-3", "scan-4"):
        connections.enter(key, Phase.HANDLING)
    assert connections.admit("scan-5") == ["client"]  # no stranger left to cut


def test_a_full_table_of_busy_connections_refuses_newcomers():
    connections = table(2)
    for key in "ab":
        connections.admit(key)
        connections.enter(key, Phase.HANDLING)
    assert connections.admit("c") is None
    assert connections.phase("c") is None
    connections.remove("a")
    assert connections.admit("c") == []


def test_cut_connections_still_count_until_their_thread_ends():
    """Never more than twice the limit of threads, even if cut ones are slow to leave."""
    connections = table(2)
    assert connections.admit("a") == [] and connections.admit("b") == []
    assert connections.admit("c") == ["a"]
    assert connections.admit("d") == ["b"]
    assert connections.admit("e") is None  # a and b have not left yet
    connections.remove("a")
    assert connections.admit("e") == ["c"]


def test_deadlines_for_waiting_and_reading_but_never_handling():
    clock = FakeClock()
    connections = table(5, clock)
    for key in "abc":
        connections.admit(key)
    connections.enter("b", Phase.READING)
    connections.enter("c", Phase.HANDLING)
    clock.advance(9.9)
    assert connections.overdue() == []
    clock.advance(0.1)
    assert connections.overdue() == ["b"]  # request_timeout: 10 s from its first byte
    assert connections.overdue() == []  # each reported once
    clock.advance(20)
    assert connections.overdue() == ["a"]  # idle_timeout: 30 s
    clock.advance(3600)
    assert connections.overdue() == []  # handling is never cut
    connections.enter("c", Phase.WAITING)  # the reply went out: a new idle period starts
    clock.advance(29)
    assert connections.overdue() == []
    clock.advance(1)
    assert connections.overdue() == ["c"]


def test_a_trickled_request_keeps_its_first_deadline():
    clock = FakeClock()
    connections = table(5, clock)
    connections.admit("slow")
    connections.enter("slow", Phase.READING)
    for _ in range(9):
        clock.advance(1)
        connections.enter("slow", Phase.READING)  # more bytes: same phase, same deadline
    clock.advance(1)
    assert connections.overdue() == ["slow"]


def test_when_full_the_owner_holding_the_most_makes_room_from_its_own():
    clock = FakeClock()
    connections = table(4, clock)
    connections.admit("client", owner="10.0.0.1")  # the oldest idle one: not the flood's
    for key in ("f1", "f2", "f3"):
        clock.advance(1)
        connections.admit(key, owner="10.0.0.9")
    assert connections.admit("newcomer", owner="10.0.0.2") == ["f1"]
    assert connections.admit("f4", owner="10.0.0.9") == ["f2"]  # the flood competes with itself
    assert (connections.held_by("10.0.0.9"), connections.held_by("10.0.0.1")) == (2, 1)
    for key in ("f3", "f4"):
        connections.enter(key, Phase.HANDLING)  # the flood's are busy: the next owner gives way
    assert connections.admit("another", owner="10.0.0.3") == ["client"]


def test_an_owner_past_its_share_replaces_its_own_idle_connection_or_is_refused():
    connections = ConnectionTable(
        10, idle_timeout=30, request_timeout=10, per_owner=2, clock=FakeClock()
    )
    assert connections.admit("a1", owner="a") == [] and connections.admit("a2", owner="a") == []
    assert connections.admit("a3", owner="a") == ["a1"]  # though the table has room
    assert connections.admit("b1", owner="b") == []
    for key in ("a2", "a3"):
        connections.enter(key, Phase.HANDLING)
    assert connections.admit("a4", owner="a") is None  # all its own busy: refused
    assert connections.admit("proxy", owner="a", capped=False) == []  # a trusted proxy's
    assert connections.held_by("a") == 3


def test_a_connection_that_never_sent_a_request_has_a_shorter_deadline():
    clock = FakeClock()
    connections = ConnectionTable(
        5, idle_timeout=30, request_timeout=10, fresh_timeout=2, clock=clock
    )
    connections.admit("silent")
    connections.admit("client")
    for phase in (Phase.READING, Phase.HANDLING, Phase.WAITING):
        connections.enter("client", phase)
    clock.advance(2)
    assert connections.overdue() == ["silent"]
    clock.advance(27.9)
    assert connections.overdue() == []
    clock.advance(0.1)
    assert connections.overdue() == ["client"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"idle_timeout": 0},
        {"request_timeout": -1},
        {"fresh_timeout": 0},
        {"per_owner": 0},
    ],
)
def test_table_settings_are_checked(kwargs):
    settings = {"limit": 2, "idle_timeout": 1.0, "request_timeout": 1.0, **kwargs}
    with pytest.raises(ValueError):
        ConnectionTable(**settings)


# -- header parsing ------------------------------------------------------------------------------


def headers(*lengths: str) -> Message:
    message = Message()
    for value in lengths:
        message["Content-Length"] = value
    return message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), None),
        (("0",), 0),
        (("42",), 42),
        ((" 42 ",), 42),
        (("42", "42"), 42),
        (("0" * 5000 + "7",), 7),
        (("9" * 5000,), 10**18),
        (("123456789012345678901",), 10**18),
    ],
)
def test_content_length_values(values, expected):
    assert content_length(headers(*values)) == expected


@pytest.mark.parametrize(
    "values", [("²",), ("٣",), ("-5",), ("+5",), ("1e3",), ("abc",), ("",), ("12, 13",), ("1", "2")]
)
def test_malformed_content_length_is_a_value_error(values):
    with pytest.raises(ValueError):
        content_length(headers(*values))


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (None, None),
        ("", None),
        ("sk-123", "sk-123"),
        ("Bearer sk-123", "sk-123"),
        ("bearer   sk-123 ", "sk-123"),
        ("Bearer", "Bearer"),
        ("Basic abc", "Basic abc"),
    ],
)
def test_presented_key_accepts_the_raw_and_the_bearer_form(header, key):
    assert presented_key(header) == key


# -- real sockets --------------------------------------------------------------------------------


class EchoHandler(BoundedRequestHandler):
    """GET answers "ok"; POST echoes its body; GET /block waits until the test releases it."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/block":
            owner = self.server.owner
            owner["entered"].release()
            owner["release"].wait(10)
        self._reply(200, b"ok")

    def do_POST(self) -> None:
        length = content_length(self.headers) or 0
        if self.path == "/discard":
            self.discard_body(length)
            self._reply(200, b"discarded")
            return
        body = self.read_body(length)
        if len(body) != length:
            self.close_connection = True
            self._reply(400, b"short body")
            return
        self._reply(200, body)

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(**limits) -> BackgroundHTTPServer:
    owner = {"entered": threading.Semaphore(0), "release": threading.Event()}
    return BackgroundHTTPServer(
        ("127.0.0.1", 0), EchoHandler, owner=owner, name="test-bounded", **limits
    ).start()


@pytest.fixture
def server() -> Iterator[BackgroundHTTPServer]:
    httpd = serve(max_connections=16, idle_timeout=5, request_timeout=1)
    yield httpd
    httpd.owner["release"].set()
    httpd.stop()


@pytest.fixture
def strict_server() -> Iterator[BackgroundHTTPServer]:
    """A request must arrive whole within 0.3 s of its first byte."""
    httpd = serve(max_connections=16, idle_timeout=5, request_timeout=0.3)
    yield httpd
    httpd.stop()


def connection_threads() -> int:
    return sum(t.name == "test-bounded-connection" for t in threading.enumerate())


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server ends the connection (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_a_hundred_idle_connections_cost_a_bounded_number_of_threads(server):
    before = threading.active_count()
    with idle_connections(server.port, 100) as idle:
        # Twice the limit (live, and cut ones on their way out), plus the few in their last
        # lines after leaving the table. Without the cap: one thread per connection, 100.
        assert peak_thread_growth(before, idle, kept=16) <= 2 * 16 + 4
        assert len(server.connections) <= 16
        response = requests.get(f"http://127.0.0.1:{server.port}/", timeout=10)
        assert response.status_code == 200 and response.text == "ok"
        assert closed_by_server(idle[0], within=5), "the oldest idle connection was cut"


def test_a_keep_alive_session_outlives_a_flood_of_idle_connections(server):
    session = requests.Session()
    url = f"http://127.0.0.1:{server.port}/"
    assert session.get(url, timeout=10).status_code == 200
    before = threading.active_count()
    with idle_connections(server.port, 100) as flood:
        peak_thread_growth(before, flood, kept=16 - 1)  # the session's connection is the 16th
        for _ in range(3):
            assert session.get(url, timeout=10).status_code == 200
    pools = session.get_adapter(url).poolmanager.pools
    opened = [pools[key].num_connections for key in pools.keys()]  # noqa: SIM118 (not iterable)
    assert opened == [1], "the flood was cut, not the client's connection"
    session.close()


def test_a_header_sent_a_byte_at_a_time_is_cut_at_the_request_deadline(strict_server):
    sock = socket.create_connection(("127.0.0.1", strict_server.port), timeout=10)
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    sent, cut = 0, False
    started = time.monotonic()
    try:
        for byte in request:  # ~50 s of trickle at this pace, against a 0.3 s deadline
            sock.sendall(bytes([byte]))
            sent += 1
            if closed_by_server(sock, within=0.05):
                cut = True
                break
    except OSError:
        cut = True
    finally:
        sock.close()
    assert cut, f"still open after {sent} bytes and {time.monotonic() - started:.1f}s"
    assert sent < len(request)


@pytest.mark.parametrize("path", ["/", "/discard"])
def test_a_body_sent_a_byte_at_a_time_is_cut_too(strict_server, path):
    sock = socket.create_connection(("127.0.0.1", strict_server.port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
    sent, cut = 0, False
    try:
        for _ in range(1000):
            sock.sendall(b"x")
            sent += 1
            reply = b""
            sock.settimeout(0.05)
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                continue
            cut = reply == b"" or not reply.startswith(b"HTTP/1.1 200")
            break
    except OSError:
        cut = True
    finally:
        sock.close()
    assert cut and sent < 1000


def test_an_idle_connection_is_closed_after_the_idle_timeout():
    httpd = serve(max_connections=4, idle_timeout=0.5, request_timeout=5)
    try:
        sock = socket.create_connection(("127.0.0.1", httpd.port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock, within=5)
        sock.close()
        assert len(httpd.connections) == 0 or connection_threads() <= 1
    finally:
        httpd.stop()


def test_when_every_slot_is_working_a_newcomer_gets_503_and_the_others_finish():
    httpd = serve(max_connections=2, idle_timeout=5, request_timeout=5)
    url = f"http://127.0.0.1:{httpd.port}"
    results: list[int] = []
    workers = [
        threading.Thread(target=lambda: results.append(requests.get(url + "/block").status_code))
        for _ in range(2)
    ]
    try:
        for worker in workers:
            worker.start()
        for _ in workers:
            assert httpd.owner["entered"].acquire(timeout=10)
        busy = requests.get(url + "/", timeout=10)
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "1"
        assert busy.json() == {"errors": [{"msg": "the server is busy: try again in a moment"}]}
        assert httpd.refused == 1
        httpd.owner["release"].set()
        for worker in workers:
            worker.join(10)
        assert results == [200, 200]
        assert requests.get(url + "/", timeout=10).status_code == 200
    finally:
        httpd.owner["release"].set()
        httpd.stop()


def test_stop_ends_every_connection_thread(server):
    with (
        idle_connections(server.port, 10),
        socket.create_connection(("127.0.0.1", server.port)) as trickle,
    ):
        trickle.sendall(b"GET / HTTP/1.1\r\n")
        assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=10).status_code == 200
        server.stop()
        assert connection_threads() == 0
