"""What idle connections cost the demo backend and the webhook receiver: threads and latency.

For each server, times ``--requests`` ordinary requests on a quiet server (the baseline),
then opens ``--idle`` connections that never send a byte (as a port scanner, a crashed
client or a slowloris would), watches the thread count while the server accepts them, and
times the same requests again beside them. Prints the peak extra threads and the ratio of
the median latency beside the idle connections to the quiet one (goal: threads stay at
the connection cap, 64; the ratio stays near 1).

    python benchmarks/idle_connections.py [--idle 1500] [--requests 50]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections.abc import Callable

import requests

from runway_widget.demo import DemoServer
from runway_widget.tracking.webhooks import WebhookReceiver

SECRET = "benchmark-webhook-secret"
UPDATE = {"task_id": "bench-1", "task_type": "runway", "status": "processing", "percentage": 1}


def _latencies(call: Callable[[], int], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status = call()
        times.append(time.perf_counter() - started)
        assert status == 200, status
    return times


def _peak_threads(before: int, seconds: float) -> int:
    peak, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, threading.active_count() - before)
        time.sleep(0.02)
    return peak


def _measure(name: str, port: int, call: Callable[[], int], idle: int, count: int) -> None:
    quiet = statistics.median(_latencies(call, count))
    before = threading.active_count()
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    try:
        peak = _peak_threads(before, 3.0)
        crowded = statistics.median(_latencies(call, count))
    finally:
        for sock in sockets:
            sock.close()
    print(
        f"{name:<16} {idle} idle connections: peak extra threads {peak}; median request "
        f"{quiet * 1000:.1f} ms quiet, {crowded * 1000:.1f} ms beside them "
        f"(ratio {crowded / quiet:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1500)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    with DemoServer() as demo:
        session = requests.Session()
        session.headers["Authorization"] = demo.api_key

        def account() -> int:
            return session.get(f"{demo.base_url}/account", timeout=30).status_code

        _measure("demo backend", demo.port, account, args.idle, args.requests)
        session.close()

    with WebhookReceiver(SECRET) as receiver:
        url = receiver.local_url
        port = int(url.rsplit(":", 1)[1].split("/")[0])

        def update() -> int:
            headers = {"x-webhook-secret": SECRET}
            return requests.post(url, json=UPDATE, headers=headers, timeout=30).status_code

        _measure("webhook receiver", port, update, args.idle, args.requests)


if __name__ == "__main__":
    main()
