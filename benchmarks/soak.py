"""Soak: many demo jobs through a faulty service; not one may be lost.

Submits the jobs (seeded run times of 30-90 s; submitting 500 takes about half a minute)
and tracks each at once on a default client, then turns on faults while they run: random
5xx replies, dropped connections and, every ten seconds, a burst of 429s with
``Retry-After``. Prints jobs finished, jobs lost (must be 0), requests sent, peak RSS and
the threads still alive once everything is stopped.

    python benchmarks/soak.py [--jobs 500]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import tempfile
import threading
import time

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.demo import DemoServer
from runway_widget.tracking.tracker import TaskTracker


class PauseCounter(logging.Handler):
    """Counts the tracker's "polling paused" warnings: proof that the faults did hit."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("polling paused"):
            self.count += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    os.environ["RUNWAY_WIDGET_HOME"] = tempfile.mkdtemp(prefix="runway-widget-soak-")
    threads_before = threading.active_count()
    pauses = PauseCounter()
    logging.getLogger("runway_widget.tracking.tracker").addHandler(pauses)
    rng = random.Random(args.seed)

    done: dict[str, str] = {}
    all_done = threading.Event()
    lock = threading.Lock()

    def on_update(task) -> None:
        if task.is_done:
            with lock:
                done[task.task_id] = task.status
                if len(done) == args.jobs:
                    all_done.set()

    started = time.monotonic()
    with DemoServer(job_seconds=lambda payload: rng.uniform(30.0, 90.0), credits=10**7) as server:
        client = ApiframeClient(api_key=server.api_key, base_url=server.base_url)
        tracker = TaskTracker(client)
        for _ in range(args.jobs):
            task_id = client.imagine(prompt="a lighthouse in a storm", generation_type="text2video")
            tracker.track(task_id, on_update=on_update)
        faults = server.faults
        faults.error_rate = 0.10
        faults.drop_rate = 0.03
        faults.retry_after = 1.0
        stop_bursts = threading.Event()

        def bursts() -> None:
            while not stop_bursts.wait(10.0):
                faults.rate_limit_burst = 3

        burster = threading.Thread(target=bursts, daemon=True)
        burster.start()
        all_done.wait(args.timeout)
        elapsed = time.monotonic() - started
        stop_bursts.set()
        burster.join()
        tracker.stop()
        client.close()
        stats = server.stats
    threads_after = threading.active_count()

    finished = sum(status == "finished" for status in done.values())
    failed = sum(status == "failed" for status in done.values())
    lost = args.jobs - len(done)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    requests_sent = stats.get("/fetch", 0) + stats.get("/fetch-many", 0)
    print(f"jobs: {args.jobs}, all settled or timed out after {elapsed:.1f} s")
    print(f"polling paused by errors or 429s: {pauses.count} times")
    print(f"jobs finished: {finished}  failed: {failed}  lost: {lost}")
    print(
        f"requests sent: {requests_sent} (fetch-many {stats.get('/fetch-many', 0)}, "
        f"fetch {stats.get('/fetch', 0)})"
    )
    print(f"peak RSS: {peak_mb:.0f} MB")
    print(f"threads alive at the end: {threads_after} (before: {threads_before})")
    print(f"jobs_lost={lost}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
