"""What the poller costs a notebook: trivial-cell latency in a real kernel, idle vs busy.

In rounds, times 200 executions of ``pass`` in an idle kernel, then tracks 100 demo jobs
in that kernel (each with a progress bar widget the callbacks update, as the panel does),
waits until they are processing (bars moving), times 200 more and stops the tracker.
The demo backend runs in a separate process, so only the tracker's work lands in the
kernel. Prints the latencies, the poller thread's own CPU use, and the ratio of the busy
median to the idle one (goal: at most 1.1).

    python benchmarks/kernel_overhead.py [--cells 200] [--jobs 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time

from jupyter_client.manager import start_new_kernel

SETUP = """
import os, threading, time
from ipywidgets import FloatProgress
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.tracking.tracker import THREAD_NAME, TaskTracker

def poller_cpu():
    # utime + stime of the poller thread, in seconds (Linux /proc)
    for thread in threading.enumerate():
        if thread.name == THREAD_NAME:
            with open(f"/proc/self/task/{{thread.native_id}}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0

client = ApiframeClient(api_key={key!r}, base_url={url!r})
"""

TRACK = """
tracker = TaskTracker(client)
bars, statuses = {{}}, {{}}
for _ in range({jobs}):
    task_id = client.imagine(prompt="a lighthouse in a storm", generation_type="text2video")
    bars[task_id] = bar = FloatProgress(min=0, max=100)
    tracker.track(
        task_id,
        on_update=lambda task: statuses.__setitem__(task.task_id, task.status),
        on_progress=lambda value, bar=bar: setattr(bar, "value", value),
    )
"""

MARK = "cpu_mark, wall_mark = poller_cpu(), time.monotonic()"

REPORT = """
print(len(statuses), sum(bar.value > 0 for bar in bars.values()),
      (poller_cpu() - cpu_mark) / (time.monotonic() - wall_mark))
tracker.stop()
"""


def serve(job_seconds: float, ready: multiprocessing.Queue, done: multiprocessing.Event) -> None:
    from runway_widget.demo import DemoServer

    with DemoServer(job_seconds=job_seconds, credits=10**7) as server:
        ready.put((server.base_url, server.api_key))
        done.wait()


def run(kc, code: str) -> str:
    output: list[str] = []
    reply = kc.execute_interactive(
        code, timeout=120, output_hook=lambda msg: output.append(msg["content"].get("text", ""))
    )
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('evalue')}")
    return "".join(output)


def time_cells(kc, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        run(kc, "pass")
        times.append(time.perf_counter() - start)
    return times


def describe(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    return (
        f"{label:<20} median {1000 * statistics.median(times):6.2f} ms  "
        f"mean {1000 * statistics.fmean(times):6.2f} ms  "
        f"p95 {1000 * ordered[int(0.95 * len(ordered))]:6.2f} ms  max {1000 * ordered[-1]:7.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--job-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    os.environ["RUNWAY_WIDGET_HOME"] = tempfile.mkdtemp(prefix="runway-widget-bench-")

    spawn = multiprocessing.get_context("spawn")
    ready, done = spawn.Queue(), spawn.Event()
    server = spawn.Process(target=serve, args=(args.job_seconds, ready, done), daemon=True)
    server.start()
    base_url, api_key = ready.get(timeout=60)
    idle: list[float] = []
    busy: list[float] = []
    reports: list[str] = []
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        run(kc, SETUP.format(key=api_key, url=base_url))
        time_cells(kc, 20)  # warm up
        for _ in range(args.rounds):
            idle += time_cells(kc, args.cells)
            run(kc, TRACK.format(jobs=args.jobs))
            time.sleep(0.15 * args.job_seconds)  # past "starting": the bars are moving
            run(kc, MARK)
            busy += time_cells(kc, args.cells)
            reports.append(run(kc, REPORT).split())
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        done.set()
        server.join(10)

    print(f"{args.cells} trivial cells x {args.rounds} rounds: idle vs {args.jobs} jobs tracked")
    print(describe("idle kernel", idle))
    print(describe(f"{args.jobs} jobs tracked", busy))
    for number, (seen, moving, cpu) in enumerate(reports, 1):
        print(
            f"  round {number}: tasks with a status {seen}, bars moving {moving}, "
            f"poller CPU {100 * float(cpu):.1f}% of one core"
        )
    print(f"overhead_ratio_median={statistics.median(busy) / statistics.median(idle):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
