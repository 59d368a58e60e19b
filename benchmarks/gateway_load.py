"""A room through the gateway, quiet and beside a noisy neighbour: latency, pushes, lost, overspend.

P simulated participants (loopback) each submit 2 jobs (and try a 3rd, over their 2-job
quota), then poll ``/fetch`` for each job every second until it ends. Run times are spread
over 20–40 s (seeded, the same in every run). Three runs, each on its own demo backend in
this process:

(a) baseline: the participants poll the upstream directly (one request per task per second);
(b) quiet: the same participants through a ``runway-widget gateway serve`` process (SQLite,
    ``--allow-private-webhooks``: their receivers are on loopback), which follows every task
    with one batched poller and answers fetches from its state. Each participant's jobs carry
    a webhook to a receiver of their own (``room_peers.Receivers``, in its own process),
    which notes when each push arrives;
(c) noisy: the same room while one more participant (``room_peers.Neighbour``, in its own
    process, from its own address) does its worst, all at once: ``--idle`` connections that
    never send a byte (opened again as they are cut), its whole quota of jobs with webhooks
    to a receiver that never answers and clips that trickle a byte a second (the demo's
    ``elsewhere`` fault hook reports them on the neighbour's host), and a paced flood of
    ``/join`` guesses with forged proxy headers and of malformed bodies.

Participants are asyncio tasks in this process, on one aiohttp session whose connections
are kept alive (as the client's ``requests`` session keeps them); the gateway is a separate
process, so its latency is measured end to end as a participant sees it, from the moment a
connection is free. Before each run the demo renders the run's clips, so its encoder
(elsewhere, for a real upstream) does not take these cores during the measurement. A
"finished" push is timed from the moment the demo says the task finished
(`DemoServer.finished_at`) to its arrival at the participant's receiver.

The machine's load average is printed before and after each run: another process busy on
these two cores shows in every figure, so compare runs of one invocation. Goals: the quiet run
answers ``/fetch`` within 50 ms and submissions within 100 ms at p99; beside the neighbour,
everyone else's p99s stay within 1.5x of the quiet run's, their "finished" pushes arrive
within 1 s, and nothing is lost or overspent. The last line:
``fetch_p99_ratio=… submit_p99_ratio=… pushes_within_1s=…/… lost=… overspend=…
quiet_fetch_p99_ms=… quiet_submit_p99_ms=… load=…``.

``--replicas N`` runs instead N gateway processes on one PostgreSQL (started here, by the
tests' helper) sharing a clip folder (``serve --clips DIR``), each participant's requests
going to the replicas in turn (as a Service behind the hub's proxy spreads them), with the
room as in (b); and, as the reference, one process on PostgreSQL with half the room. Goals
with N replicas: ``/fetch`` p99 within 50 ms and at most 0.5 upstream requests a task; the
ratios to the one replica are printed. The last line: ``replicas=… participants=…
upstream_requests_per_task=… fetch_p99_ms=… lost=… overspend=… load=…``.

    pip install -e ".[bench]"
    python benchmarks/gateway_load.py              # 200 participants, 400 jobs (about 3 min)
    python benchmarks/gateway_load.py --quiet-only # (a) and (b)
    python benchmarks/gateway_load.py --quick      # 20 participants, short jobs
    python benchmarks/gateway_load.py --replicas 2 --participants 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.gateway_support
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))  # hostile_peers
from hostile_peers import room_for_sockets
from poll_efficiency import spread
from room_peers import MARKER, NEIGHBOUR_PROMPT, ROOM_SECRET, Neighbour, NeighbourReport, Receivers

from tests.gateway_support import free_port, postgres_server, serve_process, stop_process

PROMPT = "a lighthouse in a storm"  # one prompt: the demo renders the room's clip once
JOBS_EACH = 2
POLL_SECONDS = 1.0
WARM_UP_SECONDS = 1.0
NEIGHBOUR_JOB_SECONDS = 2.0  # its jobs end early: its clips trickle through the whole run
NEIGHBOUR_JOBS = 10  # the quota a room has when the instructor sets none
NEIGHBOUR_CONCURRENT = 2
PUSH_GOAL_SECONDS = 1.0
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
    task_ids: list[str] = field(default_factory=list)
    push_lags: list[float] = field(default_factory=list)  # seconds; inf: no "finished" push

    def p(self, q: float) -> float:
        return _pct(self.latencies_ms, q)

    def submit_p(self, q: float) -> float:
        return _pct(self.submit_ms, q)

    @property
    def per_task(self) -> float:
        return self.upstream_polls / self.tasks if self.tasks else math.nan

    @property
    def lost(self) -> int:
        return self.tasks - self.finished

    @property
    def pushes_on_time(self) -> int:
        return sum(lag <= PUSH_GOAL_SECONDS for lag in self.push_lags)

    def line(self) -> str:
        return (
            f"  {self.label:<8} tasks {self.tasks:4d}  finished {self.finished:4d}  "
            f"upstream polls {self.upstream_polls:6d} ({self.per_task:6.2f}/task)  "
            f"fetch p50 {self.p(0.5):6.1f} ms p99 {self.p(0.99):6.1f} ms  "
            f"({len(self.latencies_ms)} fetches, {self.errors} errors); submit p50 "
            f"{self.submit_p(0.5):.1f} ms p99 {self.submit_p(0.99):.1f} ms"
        )

    def pushes_line(self) -> str:
        missing = sum(math.isinf(lag) for lag in self.push_lags)
        return (
            f"  {self.label:<8} 'finished' pushes after the task finished: p50 "
            f"{_pct(self.push_lags, 0.5):.2f} s p99 {_pct(self.push_lags, 0.99):.2f} s max "
            f"{max(self.push_lags, default=math.nan):.2f} s; within {PUSH_GOAL_SECONDS:g} s "
            f"{self.pushes_on_time}/{len(self.push_lags)}, never {missing}"
        )


async def participant(
    session: aiohttp.ClientSession,
    bases: list[str],
    key: str,
    run: Run,
    deadline: float,
    start_at: float,
    attempts: int,
    webhook: str | None,
) -> None:
    """Submit ``attempts`` jobs, then poll each accepted one every second until it ends;
    each request goes to the next of ``bases`` in turn."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    headers = {"Authorization": key}
    turns = itertools.cycle(bases)

    async def post(path: str, body: dict) -> tuple[int, dict, float]:
        """Status, JSON body and milliseconds from the request leaving to the reply read."""
        sent = SimpleNamespace(at=time.monotonic())
        async with session.post(
            next(turns) + path, json=body, headers=headers, trace_request_ctx=sent
        ) as reply:
            data = await reply.json(content_type=None)
            return reply.status, data, 1000 * (time.monotonic() - sent.at)

    job = {"prompt": PROMPT, "generation_type": "text2video"}
    if webhook is not None:
        job.update(webhook_url=webhook, webhook_secret=ROOM_SECRET)
    task_ids = []
    for _ in range(attempts):
        code, data, ms = await post("/runway-imagine", job)
        run.submit_ms.append(ms)
        if code == 200:
            task_ids.append(data["task_id"])
        elif code != 403:
            run.errors += 1
    run.tasks += min(len(task_ids), JOBS_EACH)
    run.accepted_over_quota += max(0, len(task_ids) - JOBS_EACH)
    run.task_ids.extend(task_ids)
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
    bases: list[str],
    keys: list[str],
    run: Run,
    deadline: float,
    window: float,
    attempts: int,
    webhooks: list[str | None],
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
                    session,
                    bases[i % len(bases) :] + bases[: i % len(bases)],  # replicas take turns first
                    key,
                    run,
                    deadline,
                    now + window * i / len(keys),
                    attempts,
                    webhooks[i],
                )
                for i, key in enumerate(keys)
            )
        )


@dataclass(frozen=True)
class Room:
    count: int
    low: float
    high: float
    seed: int
    window: float

    def job_seconds(self) -> Callable[[dict], float]:
        """The warm-up's run time, then the room's seeded ones; the neighbour's are short
        (and draw nothing from the room's sequence, so the room's are the same in every run)."""
        room = spread(self.seed, self.low, self.high)
        calls = itertools.count()

        def seconds(payload: dict) -> float:
            if MARKER in str(payload.get("prompt", "")):
                return NEIGHBOUR_JOB_SECONDS
            return WARM_UP_SECONDS if next(calls) == 0 else room(payload)

        return seconds

    @property
    def deadline(self) -> float:
        return time.monotonic() + self.window + self.high + 60


def baseline(room: Room) -> Run:
    from runway_widget.demo import DemoServer

    run = Run("baseline")
    with DemoServer(job_seconds=room.job_seconds(), credits=10**9) as demo:
        warm_up = _render_the_clip(demo, PROMPT)
        # the upstream knows no per-participant quota: each submits just its 2 jobs
        keys = [demo.api_key] * room.count
        hooks: list[str | None] = [None] * room.count
        asyncio.run(drive([demo.base_url], keys, run, room.deadline, room.window, JOBS_EACH, hooks))
        run.upstream_polls = _polls(demo) - warm_up
    return run


def through_gateway(
    room: Room, idle: int | None, replicas: int = 0
) -> tuple[Run, NeighbourReport | None]:
    """The room through one gateway process on SQLite, or through ``replicas`` processes on
    one PostgreSQL sharing a clip folder; beside the neighbour (at the first process) unless
    ``idle`` is None."""
    from runway_widget.demo import DemoServer
    from runway_widget.gateway.db.database import open_engine
    from runway_widget.gateway.db.roster import Limits, Roster

    run = Run(("quiet" if idle is None else "noisy") + (f" x{replicas}" if replicas else ""))
    neighbour: Neighbour | None = None
    report: NeighbourReport | None = None
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        demo = stack.enter_context(DemoServer(job_seconds=room.job_seconds(), credits=10**9))
        warm_up = _render_the_clip(demo, PROMPT)
        if idle is not None:
            warm_up = _render_the_clip(demo, NEIGHBOUR_PROMPT)
        if replicas:
            db = stack.enter_context(postgres_server())
        else:
            db = f"sqlite:///{home / 'gateway.sqlite3'}"
        roster = Roster(open_engine(db))
        keys = [roster.add(f"p{i:03d}", Limits(jobs=JOBS_EACH)) for i in range(room.count)]
        its_key = roster.add("neighbour", Limits(NEIGHBOUR_JOBS, None, NEIGHBOUR_CONCURRENT))
        roster.engine.dispose()
        ports = [free_port() for _ in range(max(1, replicas))]
        homes = [home / f"gateway-{port}" for port in ports]  # each process's own, as a pod's
        receivers = Receivers()
        gateways = []
        try:
            for port, own in zip(ports, homes, strict=True):
                own.mkdir()
                gateways.append(
                    serve_process(
                        port,
                        *("--db", db, "--upstream", demo.base_url, "--clips", str(home / "clips")),
                        "--allow-private-webhooks",
                        env={"APIFRAME_API_KEY": demo.api_key, "RUNWAY_WIDGET_HOME": str(own)},
                        log=own / "gateway.log",
                    )
                )
            if idle is not None:
                neighbour = Neighbour(ports[0], its_key, idle)
                demo.faults.elsewhere_marker = MARKER
                demo.faults.elsewhere_video_url = neighbour.clip_url
                neighbour.start()
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            hooks: list[str | None] = [receivers.url(f"p{i:03d}") for i in range(room.count)]
            asyncio.run(drive(bases, keys, run, room.deadline, room.window, JOBS_EACH + 1, hooks))
            if neighbour is not None:
                report, neighbour = neighbour.stop(), None
            run.upstream_polls = _polls(demo) - warm_up
            run.upstream_other = demo.stats.get("/videos", 0)
            run.accepted_over_quota = _overspend(db)
            rss = max(_rss_mb(gateway.pid) for gateway in gateways)
            cpu = sum(_cpu_seconds(gateway.pid) for gateway in gateways)
        finally:
            if neighbour is not None:
                neighbour.stop()
            for gateway in gateways:
                stop_process(gateway)
            arrivals = receivers.stop()
        finished = {a.task_id: a.at for a in arrivals if a.status == "finished"}
        upstream_ids = _upstream_ids(db)
        for task_id in run.task_ids:
            ended = demo.finished_at(upstream_ids.get(task_id, task_id))
            arrived = finished.get(task_id)
            lag = arrived - ended if arrived is not None and ended is not None else math.inf
            run.push_lags.append(lag)
        served = [ms for own in homes for ms in _served_ms(own / "gateway.log")]
    print(
        f"  {run.label:<8} gateway: {len(ports)} process(es) on "
        f"{'PostgreSQL' if replicas else 'SQLite'}, CPU {cpu:.1f} s in all "
        f"({1000 * cpu / max(1, len(run.latencies_ms)):.2f} ms a fetch, every request "
        f"included), peak RSS {rss:.0f} MB (the largest); clip downloads from the upstream: "
        f"{run.upstream_other}; /fetch time inside the gateway p50 {_pct(served, 0.5):.1f} ms "
        f"p99 {_pct(served, 0.99):.1f} ms; load {_load()}"
    )
    return run, report


def _upstream_ids(db: str) -> dict[str, str]:
    """The upstream's id of each job by the participant's (the gateway's own, with its queue)."""
    from sqlalchemy import select

    from runway_widget.gateway.db.database import jobs, open_engine

    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(jobs.c.task_id, jobs.c.upstream_task_id)).all()
    finally:
        engine.dispose()
    return {task_id: upstream for task_id, upstream in rows if task_id and upstream}


def _overspend(db: str) -> int:
    """Jobs the ledger accepted beyond participants' quotas."""
    from runway_widget.gateway.db.database import open_engine
    from runway_widget.gateway.db.roster import Roster

    engine = open_engine(db)
    try:
        return sum(max(0, row["jobs_used"] - row["jobs_limit"]) for row in Roster(engine).report())
    finally:
        engine.dispose()


def _render_the_clip(demo, prompt: str) -> int:
    """Have the demo render a run's clip before the room arrives; returns the polls so far.
    A real upstream renders elsewhere: its encoder must not share these 2 cores with the
    gateway during the measurement (it would, once, at the first submission)."""
    headers = {"Authorization": demo.api_key}
    job = {"prompt": prompt, "generation_type": "text2video"}
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


def _cpu_seconds(pid: int) -> float:
    """User and system CPU the process used so far: its work, whatever else the cores do."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lost_and_overspent(runs: list[Run]) -> str:
    """The last line's ``lost=… overspend=…``, over every run of the invocation."""
    lost = sum(run.lost for run in runs)
    return f"lost={lost} overspend={sum(run.accepted_over_quota for run in runs)}"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def compare_replicas(room: Room, replicas: int) -> None:
    """``replicas`` processes with the room, against one process with half of it."""
    half = dataclasses.replace(room, count=room.count // 2)
    one, _ = through_gateway(half, None, replicas=1)
    print(one.line())
    print(one.pushes_line())
    many, _ = through_gateway(room, None, replicas=replicas)
    print(many.line())
    print(many.pushes_line())
    print(
        f"  {replicas} replicas at {room.count} against one at {half.count}: /fetch p99 "
        f"{many.p(0.99):.1f} vs {one.p(0.99):.1f} ms (ratio {many.p(0.99) / one.p(0.99):.2f}), "
        f"upstream requests per task {many.per_task:.2f} vs {one.per_task:.2f} (ratio "
        f"{many.per_task / one.per_task:.2f}); goals with {replicas}: /fetch p99 <= 50 ms, "
        f"<= 0.5 upstream requests a task; load average {_load()}"
    )
    print(
        f"replicas={replicas} participants={room.count} "
        f"upstream_requests_per_task={many.per_task:.2f} fetch_p99_ms={many.p(0.99):.1f} "
        f"{_lost_and_overspent([one, many])} load={os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 participants, short jobs")
    parser.add_argument("--participants", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--idle", type=int, default=2000, help="the neighbour's idle sockets")
    parser.add_argument("--quiet-only", action="store_true", help="no neighbour: (a) and (b)")
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="instead: N gateway processes on one PostgreSQL against one with half the room",
    )
    args = parser.parse_args()
    count = args.participants or (20 if args.quick else 200)
    low, high = (4.0, 8.0) if args.quick else (20.0, 40.0)
    room = Room(count, low, high, args.seed, 2.0 if args.quick else 5.0)
    room_for_sockets(args.idle)  # the neighbour's sockets, and the room's
    print(
        f"{count} participants x {JOBS_EACH} jobs, run times {low:g}-{high:g} s, polling /fetch "
        f"every {POLL_SECONDS:g} s; load average {_load()} on {os.cpu_count()} cores"
    )
    if args.replicas:
        compare_replicas(room, args.replicas)
        return
    base_run = baseline(room)
    print(base_run.line())
    quiet, _ = through_gateway(room, None)
    print(quiet.line())
    print(quiet.pushes_line())
    ratio = quiet.per_task / base_run.per_task
    print(
        f"  upstream requests per task: {quiet.per_task:.2f} vs {base_run.per_task:.2f} direct "
        f"(ratio {ratio:.3f}); quiet goals: /fetch p99 {quiet.p(0.99):.1f} ms (<= 50), "
        f"submit p99 {quiet.submit_p(0.99):.1f} ms (<= 100)"
    )
    runs = [quiet]
    if not args.quiet_only:
        noisy, report = through_gateway(room, args.idle)
        runs.append(noisy)
        print(noisy.line())
        print(noisy.pushes_line())
        if report is not None:
            print(report.line())
    last = runs[-1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  benchmark process peak RSS {peak:.0f} MB; load average {_load()}")
    print(
        f"fetch_p99_ratio={last.p(0.99) / quiet.p(0.99):.2f} "
        f"submit_p99_ratio={last.submit_p(0.99) / quiet.submit_p(0.99):.2f} "
        f"pushes_within_1s={last.pushes_on_time}/{len(last.push_lags)} "
        f"{_lost_and_overspent(runs)} "
        f"quiet_fetch_p99_ms={quiet.p(0.99):.1f} quiet_submit_p99_ms={quiet.submit_p(0.99):.1f} "
        f"load={os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
