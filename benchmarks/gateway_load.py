"""A room through the gateway: upstream requests, /fetch latency, lost tasks, overspend.

P simulated participants (loopback) each submit 2 jobs (and try a 3rd, over their 2-job
quota), then poll ``/fetch`` for each job every second until it ends. Run times are spread
over 20–40 s (seeded). Two runs side by side, each on its own demo backend in this process:

(a) baseline: the participants poll the upstream directly (one request per task per second);
(b) gateway: the same participants poll a ``runway-widget gateway serve`` process (SQLite),
    which follows every task with one batched poller and answers fetches from its state.

Participants are asyncio tasks in this process, on one aiohttp session whose connections
are kept alive (as the client's ``requests`` session keeps them); the gateway is a separate
process, so its latency is measured end to end as a participant sees it, from the moment a
connection is free. Before each run the demo renders the room's one clip, so its encoder
(elsewhere, for a real upstream) does not take these cores during the measurement. Prints
the figures, submit latency included, and a last line ``upstream_requests_per_task=…
upstream_ratio=… fetch_p99_ms=… lost=… overspend=…``.

    pip install -e ".[bench]"
    python benchmarks/gateway_load.py            # 200 participants, 400 jobs (about 2 min)
    python benchmarks/gateway_load.py --quick    # 20 participants, short jobs
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/
from poll_efficiency import spread

from tests.gateway_support import free_port, serve_process, stop_process

PROMPT = "a lighthouse in a storm"  # one prompt: the demo renders the clip once
JOBS_EACH = 2
POLL_SECONDS = 1.0
WARM_UP_SECONDS = 1.0
CONNECTIONS = 48  # requests in flight at once: under the demo backend's connection cap


@dataclass
class Run:
    label: str
    tasks: int = 0
    finished: int = 0
    accepted_over_quota: int = 0
    upstream_polls: int = 0
    upstream_other: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return _pct(self.latencies_ms, q)

    @property
    def per_task(self) -> float:
        return self.upstream_polls / self.tasks if self.tasks else math.nan

    def line(self) -> str:
        return (
            f"  {self.label:<8} tasks {self.tasks:4d}  finished {self.finished:4d}  "
            f"upstream polls {self.upstream_polls:6d} ({self.per_task:6.2f}/task)  "
            f"fetch p50 {self.p(0.5):6.1f} ms p99 {self.p(0.99):6.1f} ms  "
            f"({len(self.latencies_ms)} fetches, {self.errors} errors); submit p50 "
            f"{_pct(self.submit_ms, 0.5):.1f} ms p99 {_pct(self.submit_ms, 0.99):.1f} ms"
        )


async def participant(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    run: Run,
    deadline: float,
    start_at: float,
    attempts: int,
) -> None:
    """Submit ``attempts`` jobs, then poll each accepted one every second until it ends."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    headers = {"Authorization": key}

    async def post(path: str, body: dict) -> tuple[int, dict, float]:
        """Status, JSON body and milliseconds from the request leaving to the reply read."""
        sent = SimpleNamespace(at=time.monotonic())
        async with session.post(
            base + path, json=body, headers=headers, trace_request_ctx=sent
        ) as reply:
            data = await reply.json(content_type=None)
            return reply.status, data, 1000 * (time.monotonic() - sent.at)

    task_ids = []
    for _ in range(attempts):
        code, data, ms = await post(
            "/runway-imagine", {"prompt": PROMPT, "generation_type": "text2video"}
        )
        run.submit_ms.append(ms)
        if code == 200:
            task_ids.append(data["task_id"])
        elif code != 403:
            run.errors += 1
    run.tasks += min(len(task_ids), JOBS_EACH)
    run.accepted_over_quota += max(0, len(task_ids) - JOBS_EACH)
    pending = set(task_ids)
    while pending and time.monotonic() < deadline:
        for task_id in list(pending):
            try:
                code, data, ms = await post("/fetch", {"task_id": task_id})
            except (aiohttp.ClientError, asyncio.TimeoutError):
                run.errors += 1
                continue
            run.latencies_ms.append(ms)
            if code != 200:
                run.errors += 1
            elif data["status"] in ("finished", "failed"):
                pending.discard(task_id)
                run.finished += 1
        await asyncio.sleep(POLL_SECONDS)


def _sent_after_queueing() -> aiohttp.TraceConfig:
    """Latency from when a pooled connection is free, not from waiting for one."""
    trace = aiohttp.TraceConfig()

    async def dequeued(session: object, context: SimpleNamespace, params: object) -> None:
        context.trace_request_ctx.at = time.monotonic()

    trace.on_connection_queued_end.append(dequeued)
    return trace


async def drive(
    base: str, keys: list[str], run: Run, deadline: float, window: float, attempts: int
) -> None:
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)  # kept alive, as a client's session
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trace_configs=[_sent_after_queueing()]
    ) as session:
        now = time.monotonic()
        await asyncio.gather(
            *(
                participant(
                    session, base, key, run, deadline, now + window * i / len(keys), attempts
                )
                for i, key in enumerate(keys)
            )
        )


def baseline(count: int, low: float, high: float, seed: int, window: float) -> Run:
    from runway_widget.demo import DemoServer

    run = Run("baseline")
    with DemoServer(job_seconds=_warm_up_first(spread(seed, low, high)), credits=10**9) as demo:
        warm_up = _render_the_clip(demo)
        # the upstream knows no per-participant quota: each submits just its 2 jobs
        deadline = time.monotonic() + window + high + 60
        keys = [demo.api_key] * count
        asyncio.run(drive(demo.base_url, keys, run, deadline, window, JOBS_EACH))
        run.upstream_polls = _polls(demo) - warm_up
    return run


def through_gateway(count: int, low: float, high: float, seed: int, window: float) -> Run:
    from runway_widget.demo import DemoServer
    from runway_widget.gateway.db.database import open_engine
    from runway_widget.gateway.db.roster import Limits, Roster

    run = Run("gateway")
    with (
        tempfile.TemporaryDirectory() as home,
        DemoServer(job_seconds=_warm_up_first(spread(seed, low, high)), credits=10**9) as demo,
    ):
        warm_up = _render_the_clip(demo)
        db = f"sqlite:///{Path(home) / 'gateway.sqlite3'}"
        roster = Roster(open_engine(db))
        keys = [roster.add(f"p{i:03d}", Limits(jobs=JOBS_EACH)) for i in range(count)]
        roster.engine.dispose()
        port = free_port()
        env = {"APIFRAME_API_KEY": demo.api_key, "RUNWAY_WIDGET_HOME": home}
        log = Path(home) / "gateway.log"
        gateway = serve_process(port, "--db", db, "--upstream", demo.base_url, env=env, log=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + window + high + 60
            asyncio.run(drive(base, keys, run, deadline, window, JOBS_EACH + 1))
            run.upstream_polls = _polls(demo) - warm_up
            run.upstream_other = demo.stats.get("/videos", 0)
            report = Roster(open_engine(db)).report()
            run.accepted_over_quota = sum(
                max(0, row["jobs_used"] - row["jobs_limit"]) for row in report
            )
            rss = _rss_mb(gateway.pid)
        finally:
            stop_process(gateway)
        served = _served_ms(Path(home) / "gateway.log")
    print(
        f"  gateway process peak RSS {rss:.0f} MB; clip downloads from the upstream: "
        f"{run.upstream_other}; /fetch time inside the gateway p50 {_pct(served, 0.5):.1f} ms "
        f"p99 {_pct(served, 0.99):.1f} ms"
    )
    return run


def _warm_up_first(job_seconds: Callable[[dict], float]) -> Callable[[dict], float]:
    """The first job (the warm-up) runs for a second; the room's jobs as ``job_seconds`` says."""
    calls = itertools.count()

    def seconds(payload: dict) -> float:
        return WARM_UP_SECONDS if next(calls) == 0 else job_seconds(payload)

    return seconds


def _render_the_clip(demo) -> int:
    """Have the demo render the room's one clip before the room arrives; returns the polls
    this took. A real upstream renders elsewhere: its encoder must not share these 2 cores
    with the gateway during the measurement (it would, once, at the first submission)."""
    headers = {"Authorization": demo.api_key}
    job = {"prompt": PROMPT, "generation_type": "text2video"}
    reply = requests.post(f"{demo.base_url}/runway-imagine", json=job, headers=headers, timeout=10)
    task_id = reply.json()["task_id"]
    while True:
        time.sleep(0.2)
        task = requests.post(
            f"{demo.base_url}/fetch", json={"task_id": task_id}, headers=headers, timeout=10
        ).json()
        if task["status"] in ("finished", "failed"):
            return _polls(demo)


def _polls(demo) -> int:
    return demo.stats.get("/fetch", 0) + demo.stats.get("/fetch-many", 0)


def _served_ms(log: Path) -> list[float]:
    """The gateway's own timing of each /fetch, from its access log."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start >= 0 and '"/fetch"' in line:
            times.append(json.loads(line[start:])["ms"])
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 participants, short jobs")
    parser.add_argument("--participants", type=int)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    count = args.participants or (20 if args.quick else 200)
    low, high = (4.0, 8.0) if args.quick else (20.0, 40.0)
    window = 2.0 if args.quick else 5.0
    print(
        f"{count} participants x {JOBS_EACH} jobs, run times {low:g}-{high:g} s, "
        f"polling /fetch every {POLL_SECONDS:g} s"
    )
    base_run = baseline(count, low, high, args.seed, window)
    print(base_run.line())
    gate_run = through_gateway(count, low, high, args.seed, window)
    print(gate_run.line())
    lost = gate_run.tasks - gate_run.finished
    ratio = gate_run.per_task / base_run.per_task
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  upstream requests per task: {gate_run.per_task:.2f} vs {base_run.per_task:.2f} "
        f"direct (ratio {ratio:.3f}); lost {lost}; over-quota jobs accepted "
        f"{gate_run.accepted_over_quota}; benchmark process peak RSS {peak:.0f} MB"
    )
    print(
        f"upstream_requests_per_task={gate_run.per_task:.2f} upstream_ratio={ratio:.3f} "
        f"fetch_p99_ms={gate_run.p(0.99):.1f} lost={lost} "
        f"overspend={gate_run.accepted_over_quota}"
    )


if __name__ == "__main__":
    main()
