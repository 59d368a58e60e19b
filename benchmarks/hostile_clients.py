"""What one hostile address can do to a ``gateway serve`` process: connection slots and /join.

Two measurements against a gateway in its own process (embedded demo upstream, SQLite,
``--public-url`` set, no ``--trusted-proxy``):

(a) slots: another client (127.0.0.3) times ``--requests`` ``/health`` requests, each on a new
    connection, on a quiet gateway; then one address (127.0.0.2) opens ``--idle``
    connections that never send a byte, and the other client times the same requests again.
    Prints the failures and the median and p99 latency of each run.
(b) join guesses: for ``--seconds`` one address posts wrong 4-digit join codes as fast as it can,
    each with a new forged ``X-Forwarded-For`` and ``X-Real-IP``; a guess counts when the
    gateway checked it (403) rather than refused to (429). Then 30 participants behind one
    other address join at once with the right code. Prints guesses per second and how many
    of the 30 joined.

Last line: ``other_client_failures=… other_client_p50_ratio=… join_guesses_per_s=…
sustained=… room_joined=…/30`` (sustained: guesses checked a second after the first second).

    python benchmarks/hostile_clients.py [--idle 2010] [--requests 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/

from tests.gateway_support import free_port, serve_process, stop_process

ATTACKER = "127.0.0.2"
OTHER = "127.0.0.3"
GUESSER = "127.0.0.4"
ROOM = "127.0.0.5"
CODE = "4242"
ROOM_SIZE = 30


def _request(port: int, source: str, method: str, path: str, **kwargs: object) -> int:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(method, path, **kwargs)  # type: ignore[arg-type]
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _timed(port: int, count: int) -> tuple[list[float], int]:
    times, failures = [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            status = _request(port, OTHER, "GET", "/health")
        except OSError:
            status = 0
        if status == 200:
            times.append((time.perf_counter() - started) * 1000)
        else:
            failures += 1
    return times, failures


def _summary(times: list[float], failures: int) -> str:
    if not times:
        return f"{failures} failed, none answered"
    p99 = sorted(times)[min(len(times) - 1, int(0.99 * len(times)))]
    return f"{failures} failed; median {statistics.median(times):.1f} ms, p99 {p99:.1f} ms"


def slots(port: int, idle: int, count: int) -> tuple[int, float]:
    quiet, quiet_failures = _timed(port, count)
    print(f"  quiet:                       {_summary(quiet, quiet_failures)}")
    held = []
    try:
        for _ in range(idle):
            sock = socket.socket()
            sock.bind((ATTACKER, 0))
            sock.connect(("127.0.0.1", port))
            held.append(sock)
        time.sleep(1.0)  # the gateway accepts its backlog
        crowded, failures = _timed(port, count)
        print(f"  beside {idle} idle sockets: {_summary(crowded, failures)}")
    finally:
        for sock in held:
            sock.close()
    ratio = statistics.median(crowded) / statistics.median(quiet) if crowded else float("inf")
    return failures, ratio


def guesses(port: int, seconds: float) -> tuple[float, float]:
    """Checked guesses a second: over the whole run, and after its first second (sustained)."""
    checked: list[float] = []
    limited = 0
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=(GUESSER, 0)
    )
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        n += 1
        forged = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        code = f"{n % 10000:04d}" if n % 10000 != int(CODE) else "0000x"
        body = json.dumps({"code": code, "name": "g"})
        headers = {
            "Content-Type": "application/json",
            "X-Forwarded-For": forged,
            "X-Real-IP": forged,
        }
        connection.request("POST", "/join", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status == 429:
            limited += 1
        else:
            checked.append(time.monotonic() - started)
    elapsed = time.monotonic() - started
    connection.close()
    later = sum(1 for at in checked if at >= 1.0)
    print(
        f"  {len(checked)} guesses checked ({len(checked) - later} in the first second), "
        f"{limited} refused unchecked, in {elapsed:.1f} s"
    )
    return len(checked) / elapsed, later / (elapsed - 1.0)


def room_joins(port: int) -> int:
    statuses: list[int] = []

    def join(i: int) -> None:
        body = json.dumps({"code": CODE, "name": f"student-{i}"})
        statuses.append(
            _request(
                port, ROOM, "POST", "/join", body=body, headers={"Content-Type": "application/json"}
            )
        )

    threads = [threading.Thread(target=join, args=(i,)) for i in range(ROOM_SIZE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses.count(200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=2010)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    from runway_widget.gateway.db.database import open_engine
    from runway_widget.gateway.db.roster import Limits, Roster

    with tempfile.TemporaryDirectory() as home:
        db = f"sqlite:///{Path(home) / 'gateway.sqlite3'}"
        roster = Roster(open_engine(db))
        roster.add_join_code(CODE, ROOM_SIZE, Limits(jobs=1))
        roster.engine.dispose()
        port = free_port()
        env = {"RUNWAY_WIDGET_HOME": home}
        public = f"http://127.0.0.1:{port}"
        log = Path(home) / "gateway.log"
        gateway = serve_process(
            port, "--db", db, "--upstream", "demo", "--public-url", public, env=env, log=log
        )
        try:
            print("(a) connection slots, one address flooding:")
            failures, ratio = slots(port, args.idle, args.requests)
            print("(b) join codes guessed with forged proxy headers:")
            rate, sustained = guesses(port, args.seconds)
            joined = room_joins(port)
            print(f"  {joined} of {ROOM_SIZE} participants behind one address joined at once")
        finally:
            stop_process(gateway)
    print(
        f"other_client_failures={failures}/{args.requests} other_client_p50_ratio={ratio:.2f} "
        f"join_guesses_per_s={rate:.1f} sustained={sustained:.2f} room_joined={joined}/{ROOM_SIZE}"
    )


if __name__ == "__main__":
    main()
