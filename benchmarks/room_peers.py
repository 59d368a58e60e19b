"""The peers of ``gateway_load.py``'s room, each in a process of its own.

`Receivers`: every well-behaved participant's webhook receiver (one URL each), answering at
once and noting when each push arrived. `Neighbour`: the participant who does its worst, all
at once, from its own address:

- ``--idle`` connections that never send a byte, opened again as the gateway cuts them;
- its jobs (its whole quota) with webhooks to a receiver that never answers, and prompts
  that make the demo report their clips on a host that sends a byte a second;
- a flood of ``/join`` guesses (forged ``X-Forwarded-For``) and of malformed bodies, paced.

Each runs in a spawned process, so neither its CPU nor its threads share a GIL with the
participants being measured (they still share the machine's two cores, as they would not
in a real room: the figures are, if anything, pessimistic).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import hostile_peers

ROOM_SECRET = "room-webhook-secret"
MARKER = "[neighbour]"  # the demo reports the clip of a prompt holding it on the trickle host
NEIGHBOUR_PROMPT = f"a lighthouse in a storm {MARKER}"
NEIGHBOUR_ADDRESS = "127.0.0.66"
REFILL_SECONDS = 2.0  # how often the neighbour opens again the idle connections cut
JOIN_GUESSES_PER_S = 200.0  # about the rate that once found a 2-digit code
MALFORMED_PER_S = 100.0
TRICKLE_EVERY = 1.0  # seconds between two bytes of the neighbour's clips
RESUBMIT_SECONDS = 0.1  # after a refusal (too many running, too fast): try again


def _spawn(target: Any, *args: Any) -> tuple[multiprocessing.Process, Connection]:
    here, there = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=(there, *args), daemon=True
    )
    process.start()
    return process, here


class Receivers:
    """The room's webhook receivers; `stop` returns every push as (path, task, status, at)."""

    def __init__(self) -> None:
        self._process, self._pipe = _spawn(_receive)
        self.base: str = self._pipe.recv()

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def stop(self) -> list[hostile_peers.Arrival]:
        self._pipe.send("stop")
        arrivals = [hostile_peers.Arrival(*row) for row in self._pipe.recv()]
        self._process.join(10)
        return arrivals


def _receive(pipe: Connection) -> None:
    with hostile_peers.ArrivalLog() as log:
        pipe.send(log.url("").rstrip("/"))
        pipe.recv()
        pipe.send([(a.path, a.task_id, a.status, a.at) for a in log.arrivals])


@dataclass
class NeighbourReport:
    """What the neighbour did, and how the gateway answered it."""

    idle_open: int = 0  # its idle connections still open at the end (the others were cut)
    idle_cut: int = 0  # cut by the gateway (and opened again)
    idle_refused: int = 0
    joins: Counter[int] = field(default_factory=Counter)  # status: count
    malformed: Counter[int] = field(default_factory=Counter)
    submissions: Counter[int] = field(default_factory=Counter)
    pushes_swallowed: int = 0  # the gateway's pushes its black hole took
    clip_requests: int = 0  # the gateway's copies of its trickling clips

    def line(self) -> str:
        def counts(counter: Counter[int]) -> str:
            return " ".join(f"{status}x{n}" for status, n in sorted(counter.items())) or "none"

        return (
            f"  neighbour: {self.idle_open} idle connections still open at the end, "
            f"{self.idle_cut} cut and opened again; /join {counts(self.joins)}; malformed "
            f"{counts(self.malformed)}; submissions {counts(self.submissions)} (0: cut, no "
            f"answer); pushes into its black hole {self.pushes_swallowed}; copies of its "
            f"trickling clips {self.clip_requests}"
        )


class Neighbour:
    """The participant doing its worst; `start` once the demo reports its clips elsewhere."""

    def __init__(self, port: int, token: str, idle: int) -> None:
        self._process, self._pipe = _spawn(_neighbour, port, token, idle)
        self.clip_url: str = self._pipe.recv()

    def start(self) -> None:
        self._pipe.send("go")
        self._pipe.recv()  # its idle connections are open

    def stop(self) -> NeighbourReport:
        self._pipe.send("stop")
        report: NeighbourReport = self._pipe.recv()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
        return report


def _neighbour(pipe: Connection, port: int, token: str, idle: int) -> None:
    report = NeighbourReport()
    stop = threading.Event()
    with hostile_peers.BlackHole() as hole, hostile_peers.trickling_clip(TRICKLE_EVERY) as clips:
        pipe.send(clips.base_url + hostile_peers.CLIP_PATH)
        pipe.recv()
        with hostile_peers.IdleSockets(port, NEIGHBOUR_ADDRESS, idle) as sockets:
            pipe.send("holding")
            threads = [
                threading.Thread(target=loop, args=(stop, report, *args), daemon=True)
                for loop, args in (
                    (_hold, (sockets,)),
                    (_guess, (port,)),
                    (_malform, (port, token)),
                    (_submit, (port, token, hole.url)),
                )
            ]
            for thread in threads:
                thread.start()
            pipe.recv()
            stop.set()
            for thread in threads:
                thread.join(15)
            report.idle_open = idle - sockets.closed()
            report.idle_cut, report.idle_refused = sockets.cut, sockets.refused
        report.pushes_swallowed = hole.taken
        report.clip_requests = clips.count(hostile_peers.CLIP_PATH)
    pipe.send(report)


def _hold(stop: threading.Event, report: NeighbourReport, sockets: Any) -> None:
    while not stop.wait(REFILL_SECONDS):
        sockets.refill()


def _paced(stop: threading.Event, per_second: float) -> Any:
    """Yield request numbers at ``per_second`` until ``stop`` is set."""
    started, n = time.monotonic(), 0
    while not stop.is_set():
        wait = started + n / per_second - time.monotonic()
        if wait > 0 and stop.wait(wait):
            return
        yield n
        n += 1


def _guess(stop: threading.Event, report: NeighbourReport, port: int) -> None:
    connection = hostile_peers.client(port, NEIGHBOUR_ADDRESS)
    for n in _paced(stop, JOIN_GUESSES_PER_S):
        report.joins[_status(hostile_peers.forged_join, connection, f"{n % 100:02d}", n)] += 1
    connection.close()


def _malform(stop: threading.Event, report: NeighbourReport, port: int, token: str) -> None:
    """Each malformed body to each route in turn: with its token (under its rate limit the
    gateway parses them), and to /join."""
    bodies, paths = hostile_peers.MALFORMED_BODIES, ("/runway-imagine", "/fetch", "/join")
    connection = hostile_peers.client(port, NEIGHBOUR_ADDRESS)
    headers = {"Content-Type": "application/json", "Authorization": token}
    for n in _paced(stop, MALFORMED_PER_S):
        body, path = bodies[n % len(bodies)], paths[n // len(bodies) % len(paths)]
        status = _status(hostile_peers.exchange, connection, "POST", path, body, headers)
        report.malformed[status] += 1
    connection.close()


def _status(call: Any, *args: Any) -> int:
    try:
        return int(call(*args))
    except OSError:
        return 0  # no answer: counted, never a crash of the neighbour


def _submit(
    stop: threading.Event, report: NeighbourReport, port: int, token: str, hook: str
) -> None:
    """Its whole quota, each job as soon as the gateway lets one through."""
    connection = hostile_peers.client(port, NEIGHBOUR_ADDRESS, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": token}
    job = {
        "prompt": NEIGHBOUR_PROMPT,
        "generation_type": "text2video",
        "webhook_url": hook,
        "webhook_secret": "s",
    }
    while not stop.is_set():
        try:
            connection.request("POST", "/runway-imagine", body=json.dumps(job), headers=headers)
            response = connection.getresponse()
            reply = json.loads(response.read() or b"{}")
        except (OSError, ValueError, http.client.HTTPException):
            connection.close()
            report.submissions[0] += 1
            continue
        report.submissions[response.status] += 1
        if response.status == 403 and reply["errors"][0].get("limit") == "jobs":
            break  # its quota is used
        if response.status != 200 and stop.wait(RESUBMIT_SECONDS):
            break
    connection.close()
