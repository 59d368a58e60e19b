"""The workshop burst: the tracker against one polling loop per task.

N jobs are submitted within a couple of seconds, with run times spread over 20–60 s
(seeded), to two demo backends side by side in this process:

(a) the baseline users write: one thread per task calling ``POST /fetch`` every 3 s;
(b) one `TaskTracker` on a default client (request budget 2/s).

For each N it prints requests sent, requests per task, the completion-detection delay
(server finish -> callback) p50/p95, tasks detected, and the ratios (b)/(a). A webhook run
follows (N=20: jobs submitted with the receiver's URL, tracker listening), and a last line
``requests_ratio_n20=… latency_p50_ratio_n20=…``.

    python benchmarks/poll_efficiency.py          # N = 1, 20, 100 (about five minutes)
    python benchmarks/poll_efficiency.py --quick  # short jobs, N = 1 and 5 (CI smoke run)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field

import requests

PROMPT = "a lighthouse in a storm"  # one prompt: the demo renders the clip once
BASELINE_INTERVAL = 3.0


@dataclass
class Run:
    """What one side of a comparison saw."""

    label: str
    submitted: int = 0
    requests: int = 0
    delays: list[float] = field(default_factory=list)

    @property
    def per_task(self) -> float:
        return self.requests / self.submitted if self.submitted else 0.0

    def p(self, q: float) -> float:
        if not self.delays:
            return math.nan
        ordered = sorted(self.delays)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def line(self) -> str:
        return (
            f"  {self.label:<9} requests {self.requests:5d} ({self.per_task:6.2f}/task)  "
            f"detection p50 {self.p(0.5):6.2f}s p95 {self.p(0.95):6.2f}s  "
            f"detected {len(self.delays)}/{self.submitted}"
        )


def spread(seed: int, low: float, high: float):
    """A job_seconds callable: the same seeded sequence of run times on every server."""
    rng = random.Random(seed)
    lock = threading.Lock()

    def job_seconds(payload: dict) -> float:
        with lock:
            return rng.uniform(low, high)

    return job_seconds


def fetch_count(server) -> int:
    return server.stats.get("/fetch", 0) + server.stats.get("/fetch-many", 0)


def baseline(server, count: int, submit_window: float, deadline: float) -> Run:
    """One thread per task, each calling /fetch every 3 s with plain requests."""
    run = Run("baseline", submitted=count)
    headers = {"Authorization": server.api_key}
    lock = threading.Lock()

    def follow(task_id: str) -> None:
        with requests.Session() as session:
            while time.time() < deadline:
                reply = session.post(
                    f"{server.base_url}/fetch", json={"task_id": task_id}, headers=headers
                )
                seen = time.time()
                with lock:
                    run.requests += 1
                if reply.ok and reply.json().get("status") in ("finished", "failed"):
                    with lock:
                        run.delays.append(seen - server.finished_at(task_id))
                    return
                time.sleep(BASELINE_INTERVAL)

    threads = []
    for _ in range(count):
        reply = requests.post(
            f"{server.base_url}/runway-imagine",
            json={"prompt": PROMPT, "generation_type": "text2video"},
            headers=headers,
        )
        reply.raise_for_status()
        thread = threading.Thread(target=follow, args=(reply.json()["task_id"],), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(submit_window / count)
    for thread in threads:
        thread.join(max(0.0, deadline - time.time()))
    run.requests = fetch_count(server)
    return run


def tracked(
    server, count: int, submit_window: float, deadline: float, receiver=None, label="tracker"
) -> Run:
    """One TaskTracker on a client with the default request budget."""
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.tracking.tracker import TaskTracker

    run = Run(label, submitted=count)
    done = threading.Event()
    lock = threading.Lock()
    client = ApiframeClient(api_key=server.api_key, base_url=server.base_url)
    tracker = TaskTracker(client, webhooks=receiver)
    hook = {"webhook_url": receiver.url, "webhook_secret": receiver.secret} if receiver else {}

    def on_update(task) -> None:
        if task.is_done:
            seen = time.time()
            with lock:
                run.delays.append(seen - server.finished_at(task.task_id))
                if len(run.delays) == count:
                    done.set()

    try:
        for _ in range(count):
            task_id = client.imagine(prompt=PROMPT, generation_type="text2video", **hook)
            tracker.track(task_id, on_update=on_update)
            time.sleep(submit_window / count)
        done.wait(max(0.0, deadline - time.time()))
    finally:
        tracker.stop()
        client.close()
    run.requests = fetch_count(server)
    return run


def compare(count: int, low: float, high: float, seed: int) -> tuple[Run, Run]:
    from runway_widget.demo import DemoServer

    window = min(2.0, 0.1 * count)
    deadline = time.time() + window + high + 30.0
    results: dict[str, Run] = {}
    with (
        DemoServer(job_seconds=spread(seed, low, high)) as a,
        DemoServer(job_seconds=spread(seed, low, high)) as b,
    ):
        side = threading.Thread(
            target=lambda: results.__setitem__("a", baseline(a, count, window, deadline))
        )
        side.start()
        results["b"] = tracked(b, count, window, deadline)
        side.join()
    return results["a"], results["b"]


def webhook_run(count: int, low: float, high: float, seed: int) -> Run:
    from runway_widget.demo import DemoServer
    from runway_widget.tracking.webhooks import WebhookReceiver

    window = min(2.0, 0.1 * count)
    deadline = time.time() + window + high + 30.0
    with DemoServer(job_seconds=spread(seed, low, high)) as server, WebhookReceiver() as receiver:
        return tracked(server, count, window, deadline, receiver=receiver, label="webhooks")


def ratio(b: float, a: float) -> float:
    return b / a if a else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short jobs, N = 1 and 5")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ["RUNWAY_WIDGET_HOME"] = tempfile.mkdtemp(prefix="runway-widget-bench-")

    sizes, low, high, hooked = (
        ([1, 5], 4.0, 10.0, 5) if args.quick else ([1, 20, 100], 20.0, 60.0, 20)
    )
    print(
        f"workshop burst: run times {low:g}-{high:g} s (seed {args.seed}), baseline /fetch every "
        f"{BASELINE_INTERVAL:g} s per task, tracker on a 2 req/s budget"
    )
    pairs: dict[int, tuple[Run, Run]] = {}
    for count in sizes:
        a, b = compare(count, low, high, args.seed)
        pairs[count] = (a, b)
        print(f"N={count}")
        print(a.line())
        print(b.line())
        print(
            f"  ratios    requests {ratio(b.requests, a.requests):.3f}  "
            f"detection p50 {ratio(b.p(0.5), a.p(0.5)):.3f}  p95 {ratio(b.p(0.95), a.p(0.95)):.3f}"
        )

    pushed = webhook_run(hooked, low, high, args.seed)
    polled = pairs[hooked][1] if hooked in pairs else compare(hooked, low, high, args.seed)[1]
    print(f"N={hooked} with webhooks")
    print(pushed.line())
    print(
        f"  vs polling only: detection p50 {pushed.p(0.5):.3f}s vs {polled.p(0.5):.3f}s, "
        f"polling requests {pushed.requests} vs {polled.requests} "
        f"(ratio {ratio(pushed.requests, polled.requests):.3f})"
    )

    key = 20 if 20 in pairs else sizes[-1]
    a, b = pairs[key]
    print(
        f"requests_ratio_n{key}={ratio(b.requests, a.requests):.3f} "
        f"latency_p50_ratio_n{key}={ratio(b.p(0.5), a.p(0.5)):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
