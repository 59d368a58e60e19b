"""The whole room presses Generate at once: the gateway's queue in front of a limited upstream.

P participants (30, 100 and 300) each submit 2 jobs within 2 s to a ``runway-widget gateway
serve`` process (SQLite) whose upstream is one demo backend, in this process, that runs at
most 4 jobs at once and answers the rest 429 with ``Retry-After``, as a provider does past
its plan. Three gateways per P, each on a demo backend of its own:

- queue, learned: the gateway learns the limit from the 429s;
- queue, stated: ``--upstream-concurrency 4``;
- no queue: ``--no-queue``, each submission forwarded at once as before the queue; a
  participant whose submission is refused presses again after its ``Retry-After``, as a
  person would.

The gateway has a ``--public-url``, so the demo tells it by webhook the moment a job ends
(as APIFRAME does a gateway with a public address): with the benchmark's short jobs, a
poll's delay would otherwise weigh on every round of four. Participants hear about their
jobs by webhook too (the gateway pushes each change to this process: no polling, so the
times are the gateway's, not a poll interval's); a clip counts when the push says
``finished`` with the gateway's own video URL. A run ends when everyone
has their first clip. Printed per run: refusals participants saw, upstream 429s, time from
the first press to the first clip (p50, p95; the ideal is ceil(P / 4) x the job time),
fairness (p95 / p50 of those times) and the upstream's peak concurrency.

Then the submission's own latency: 100 participants, each on a warm keep-alive connection,
submit at the same moment (plain sockets: the requests leave within a millisecond or two);
p50 and p99 from each request leaving to its answer read, through the queueing gateway,
through ``--no-queue``, and straight to the demo backend.

Participants are asyncio tasks on one aiohttp session; the demo backend renders the room's
one clip before each run (a real upstream renders elsewhere). The last lines print the
queue's run and the one without it, for each P.

    pip install -e ".[bench]"
    python benchmarks/room_burst.py                       # about 12 minutes
    python benchmarks/room_burst.py --sizes 30 --job-seconds 1
    python benchmarks/room_burst.py --sizes --latency-runs 3  # the submit latency only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import selectors
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import requests
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/

from tests.gateway_support import free_port, serve_process, stop_process

LIMIT = 4
JOBS_EACH = 2
PRESS_WINDOW = 2.0  # seconds over which the room presses Generate
SIMULTANEOUS = 100
PROMPT = "a lighthouse in a storm"  # one prompt: the demo renders the clip once
JOB = {"prompt": PROMPT, "generation_type": "text2video"}
MODES = {
    "queue, learned": (),
    "queue, stated": ("--upstream-concurrency", str(LIMIT)),
    "no queue": ("--no-queue",),
}


@dataclass
class Run:
    label: str
    people: int
    job_seconds: float
    refusals: int = 0
    errors: int = 0
    upstream_429: int = 0
    upstream_jobs: int = 0  # jobs the upstream took during the run
    peak: int = 0
    pressed: dict[int, float] = field(default_factory=dict)  # participant: first press
    clips: dict[tuple[int, int], float] = field(default_factory=dict)  # (who, job): arrival
    took: float = 0.0

    @property
    def first_clips(self) -> list[float]:
        return [self.clips[(i, 0)] - at for i, at in self.pressed.items() if (i, 0) in self.clips]

    @property
    def ideal(self) -> float:
        return math.ceil(self.people / LIMIT) * self.job_seconds

    def line(self) -> str:
        firsts = self.first_clips
        p50, p95 = _pct(firsts, 0.5), _pct(firsts, 0.95)
        return (
            f"  P={self.people:<3d} {self.label:<14} refusals {self.refusals:5d}  upstream 429s "
            f"{self.upstream_429:5d} ({self.upstream_429 / max(1, self.upstream_jobs):.3f}/job)  "
            f"first clip p50 {p50:6.1f} s p95 {p95:6.1f} s (ideal {self.ideal:5.1f} s, "
            f"p95 {p95 / self.ideal:4.2f}x)  fairness p95/p50 {p95 / p50:5.2f}  "
            f"peak {self.peak}  clips {len(firsts)}/{self.people}"
            + (f"  errors {self.errors}" if self.errors else "")
        )


# -- a room ---------------------------------------------------------------------------------------


async def _participant(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    hooks: str,
    who: int,
    start_at: float,
    run: Run,
) -> None:
    """Press Generate twice; a refused press is pressed again after its Retry-After."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    run.pressed[who] = time.monotonic()
    for job in range(JOBS_EACH):
        body = {**JOB, "webhook_url": f"{hooks}/{who}/{job}"}
        while True:
            try:
                async with session.post(
                    f"{base}/runway-imagine", json=body, headers={"Authorization": key}
                ) as reply:
                    await reply.read()
                    if reply.status == 200:
                        break
                    run.refusals += 1
                    wait = float(reply.headers.get("Retry-After") or 1)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                run.errors += 1
                wait = 1.0
            await asyncio.sleep(wait)


def _hook_app(run: Run, everyone: asyncio.Event) -> web.Application:
    """Receives the gateway's pushes: ``/<who>/<job>``, the task as its owner sees it."""

    async def receive(request: web.Request) -> web.Response:
        task = await request.json()
        key = (int(request.match_info["who"]), int(request.match_info["job"]))
        if task.get("status") == "finished" and task.get("video_url") and key not in run.clips:
            run.clips[key] = time.monotonic()
            if sum(job == 0 for _who, job in run.clips) == run.people:
                everyone.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{who}/{job}", receive)
    return app


async def _room(base: str, keys: list[str], run: Run, deadline: float) -> None:
    everyone = asyncio.Event()
    runner = web.AppRunner(_hook_app(run, everyone), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.monotonic() + 0.5
            presses = [
                _participant(
                    session,
                    base,
                    key,
                    f"http://127.0.0.1:{port}",
                    who,
                    start + PRESS_WINDOW * who / len(keys),
                    run,
                )
                for who, key in enumerate(keys)
            ]
            pressing = asyncio.gather(*presses)
            try:
                await asyncio.wait_for(everyone.wait(), deadline)
            except asyncio.TimeoutError:
                print(f"    (stopped after {deadline:.0f} s without every first clip)")
            pressing.cancel()
            await asyncio.gather(pressing, return_exceptions=True)
    finally:
        run.took = time.monotonic() - started
        await runner.cleanup()


def burst(people: int, label: str, job_seconds: float) -> Run:
    """One room of ``people`` against a gateway started with ``MODES[label]``."""
    from runway_widget.demo import DemoServer

    run = Run(label, people, job_seconds)
    with _Gateway(people, MODES[label], job_seconds) as (base, keys, demo):
        before = demo.busy_refusals, demo.jobs_submitted
        deadline = 3 * run.ideal + 60
        asyncio.run(_room(base, keys, run, deadline))
        run.upstream_429 = demo.busy_refusals - before[0]
        run.upstream_jobs = demo.jobs_submitted - before[1]
        run.peak = demo.peak_running
    assert isinstance(demo, DemoServer)
    return run


class _Gateway:
    """A demo backend limited to `LIMIT` here, ``count`` participants' tokens, and a
    ``gateway serve`` process in front of it; yields (its URL, the tokens, the demo)."""

    def __init__(self, count: int, options: tuple[str, ...], job_seconds: float) -> None:
        self.count, self.options, self.job_seconds = count, options, job_seconds

    def __enter__(self) -> tuple[str, list[str], object]:
        from runway_widget.demo import DemoServer
        from runway_widget.gateway.db.database import open_engine
        from runway_widget.gateway.db.roster import Limits, Roster

        self._home = tempfile.TemporaryDirectory()
        home = self._home.name
        self.demo = DemoServer(
            job_seconds=_quick_first(self.job_seconds),
            concurrency=LIMIT,
            credits=10**9,
            max_connections=4 * SIMULTANEOUS,
        ).start()
        _render_the_clip(self.demo)
        db = f"sqlite:///{Path(home) / 'gateway.sqlite3'}"
        roster = Roster(open_engine(db))
        keys = [roster.add(f"p{i:03d}", Limits(jobs=JOBS_EACH)) for i in range(self.count)]
        roster.engine.dispose()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"APIFRAME_API_KEY": self.demo.api_key, "RUNWAY_WIDGET_HOME": home}
        args = ("--db", db, "--upstream", self.demo.base_url, "--rate", "100")
        args += ("--public-url", base)  # the upstream tells the gateway when a job ends
        args += ("--allow-private-webhooks", *self.options)  # the room's hooks are here
        self.process = serve_process(port, *args, env=env, log=Path(home) / "gateway.log")
        return base, keys, self.demo

    def __exit__(self, *exc_info: object) -> None:
        stop_process(self.process)
        self.demo.stop()
        self._home.cleanup()


def _quick_first(job_seconds: float) -> Callable[[dict], float]:
    """The warm-up job (the render of the room's clip) runs half a second; the rest as asked."""
    calls = iter(range(10**9))

    def seconds(_payload: dict) -> float:
        return 0.5 if next(calls) == 0 else job_seconds

    return seconds


def _render_the_clip(demo: object) -> None:
    """Have the demo render the room's one clip before the room arrives."""
    base, headers = demo.base_url, {"Authorization": demo.api_key}  # type: ignore[attr-defined]
    reply = requests.post(f"{base}/runway-imagine", json=JOB, headers=headers, timeout=10)
    task_id = reply.json()["task_id"]
    while requests.post(
        f"{base}/fetch", json={"task_id": task_id}, headers=headers, timeout=10
    ).json()["status"] not in ("finished", "failed"):
        time.sleep(0.2)


# -- the submission's own latency -----------------------------------------------------------------


def _warm(base: str, keys: list[str]) -> list[socket.socket]:
    """One keep-alive connection per key, each with one answered request behind it."""
    host, port = base.removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=30) for _ in keys]
    for sock, key in zip(sockets, keys, strict=True):
        sock.sendall(_request("GET", "/account", key, b""))
        _answer(sock)
    return sockets


def _at_once(sockets: list[socket.socket], keys: list[str]) -> list[float]:
    """Each key submits once on its warm connection, all sent together; milliseconds from
    each request's last byte leaving to its answer's last byte read.

    Plain sockets and one ``selectors`` loop: the 100 requests leave within a millisecond or
    two, so what is measured is the server, not a client library queueing its own sends.
    """
    body = json.dumps(JOB).encode()
    requests_bytes = [_request("POST", "/runway-imagine", key, body) for key in keys]
    sent: dict[socket.socket, float] = {}
    for sock, data in zip(sockets, requests_bytes, strict=True):
        sock.sendall(data)
        sent[sock] = time.perf_counter()
    return [1000 * (done - sent[sock]) for sock, done in _answers(sockets).items()]


def _request(method: str, path: str, key: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while not _whole(data):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the whole answer")
        data += chunk
    return data


def _answers(sockets: list[socket.socket]) -> dict[socket.socket, float]:
    """When each socket's whole answer had arrived (``time.perf_counter()``)."""
    selector = selectors.DefaultSelector()
    buffers = {sock: b"" for sock in sockets}
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    done: dict[socket.socket, float] = {}
    while len(done) < len(sockets):
        for event, _mask in selector.select(timeout=60):
            sock = event.fileobj
            assert isinstance(sock, socket.socket)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the whole answer")
            buffers[sock] += chunk
            if _whole(buffers[sock]):
                done[sock] = time.perf_counter()
                selector.unregister(sock)
    return done


def _whole(data: bytes) -> bool:
    head, found, rest = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value)
    return True


@dataclass
class Latency:
    label: str
    ms: list[float]
    cpu_ms: float | None = None  # the gateway process's CPU time for the whole burst

    def line(self) -> str:
        cpu = f"  (gateway CPU {self.cpu_ms:.0f} ms for them all)" if self.cpu_ms else ""
        return (
            f"  {self.label:<14} p50 {_pct(self.ms, 0.5):7.1f} ms  p99 "
            f"{_pct(self.ms, 0.99):7.1f} ms{cpu}"
        )


def submit_latency(label: str) -> Latency:
    """`SIMULTANEOUS` submissions at once through a gateway (``label`` of `MODES`), or
    straight to a demo backend (``"direct"``). The gateway's own CPU time for them is a
    figure a busy machine does not stretch (its other processes only delay it)."""
    if label == "direct":
        from runway_widget.demo import DemoServer

        with DemoServer(
            job_seconds=1.0, concurrency=LIMIT, credits=10**9, max_connections=4 * SIMULTANEOUS
        ) as demo:
            _render_the_clip(demo)
            keys = [demo.api_key] * SIMULTANEOUS
            return Latency(label, _closing(_at_once, _warm(demo.base_url, keys), keys))
    gateway = _Gateway(SIMULTANEOUS, MODES[label], 1.0)
    with gateway as (base, keys, _demo):
        sockets = _warm(base, keys)
        time.sleep(1.0)  # the gateway settles after the warm-up
        before = _cpu_seconds(gateway.process.pid)
        ms = _closing(_at_once, sockets, keys)
        return Latency(label, ms, 1000 * (_cpu_seconds(gateway.process.pid) - before))


def _closing(
    fire: Callable[[list[socket.socket], list[str]], list[float]],
    sockets: list[socket.socket],
    keys: list[str],
) -> list[float]:
    try:
        return fire(sockets, keys)
    finally:
        for sock in sockets:
            sock.close()


def _cpu_seconds(pid: int) -> float:
    """User and system time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[30, 100, 300])
    parser.add_argument("--latency-runs", type=int, default=1, help="submit-latency runs each")
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    print(
        f"rooms of {', '.join(map(str, args.sizes))} x {JOBS_EACH} jobs pressed within "
        f"{PRESS_WINDOW:g} s; upstream: demo backend, {LIMIT} jobs at once, "
        f"{args.job_seconds:g} s each; load average {_load()}"
    )
    runs: dict[tuple[int, str], Run] = {}
    for people in args.sizes:
        for label in args.modes:
            runs[(people, label)] = run = burst(people, label, args.job_seconds)
            print(run.line(), f"({run.took:.0f} s)", flush=True)
    print(f"submit latency, {SIMULTANEOUS} participants at once (load average {_load()}):")
    for _ in range(args.latency_runs):
        for label in ("queue, learned", "no queue", "direct"):
            print(submit_latency(label).line(), flush=True)
    print("both runs, for each room:")
    for people in args.sizes:
        for label in ("queue, learned", "no queue"):
            if (people, label) in runs:
                print(runs[(people, label)].line())


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
