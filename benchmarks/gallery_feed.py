"""The live gallery's feed under a room of open pages: what each poll costs, how soon clips show.

A gateway (in this process, SQLite) holds 60 finished clips of 30 participants; one new clip
lands every second. P pages (default 30: every participant has the gallery open, plus the
projector) poll ``/gallery.json`` every 1.5 s, as the page's script does. Two runs side by
side on the same gateway:

(a) baseline: every poll asks for the whole feed (no cursor);
(b) cursor: every poll asks only for clips newer than the last it saw (``?since=``), as the
    page does.

Prints bytes per poll, poll latency p50/p99, and how long after a clip landed a page first
had it (the feed's share of "a clip on the projector within 3 s"). Last line:
``bytes_ratio=… poll_p99_ms=… seen_p99_s=…`` (cursor run; ratio = cursor / baseline).

    python benchmarks/gallery_feed.py            # 30 pages, 20 s per run
    python benchmarks/gallery_feed.py --quick    # 10 pages, 6 s per run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert
from tornado.httpclient import AsyncHTTPClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository

from runway_widget.gateway.app import GatewayServer
from runway_widget.gateway.db.database import jobs
from runway_widget.gateway.db.roster import Limits

POLL_SECONDS = 1.5
PARTICIPANTS = 30
CLIPS_AT_START = 60


@dataclass
class Run:
    label: str
    polls: int = 0
    bytes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seen_after_s: list[float] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Room:
    """The gateway's ledger, filled with clips by participants, and a clip source at 1 Hz."""

    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway
        self.owners = [gateway.roster.enroll(f"participant {n:02d}", Limits())
                       for n in range(PARTICIPANTS)]
        self.landed: dict[str, float] = {}
        self._count = 0
        for _ in range(CLIPS_AT_START):
            self.add_clip()

    def add_clip(self) -> None:
        number = self._count
        self._count += 1
        now = time.time()
        with self.gateway.engine.begin() as conn:
            job_id = conn.execute(insert(jobs).values(
                participant_id=self.owners[number % len(self.owners)], task_id=f"task-{number}",
                state="finished", credits=5, status="finished", percentage=100,
                request=json.dumps({"prompt": f"clip number {number}", "duration": 5}),
                video_key=f"benchmark-key-{number:08d}", video_path=f"/clips/{number}.mp4",
                created_at=now, updated_at=now,
            )).inserted_primary_key[0]
        self.landed[f"job-{job_id}"] = now


async def _page(client: AsyncHTTPClient, url: str, token: str, use_cursor: bool, run: Run,
                room: Room, until: float) -> None:
    seen: set[str] = set()
    cursor = ""
    first = True
    while time.monotonic() < until:
        started = time.perf_counter()
        target = f"{url}?since={cursor}" if use_cursor and cursor else url
        reply = await client.fetch(target, headers={"Authorization": token})
        run.latencies_ms.append(1000 * (time.perf_counter() - started))
        run.polls += 1
        run.bytes += len(reply.body)
        feed = json.loads(reply.body)
        cursor = feed["cursor"]
        arrived = time.time()
        for clip in feed["clips"]:
            if clip["id"] not in seen:
                seen.add(clip["id"])
                if not first and clip["id"] in room.landed:
                    run.seen_after_s.append(arrived - room.landed[clip["id"]])
        first = False
        await asyncio.sleep(POLL_SECONDS)


def _measure(room: Room, token: str, pages: int, seconds: float, use_cursor: bool) -> Run:
    run = Run("cursor" if use_cursor else "baseline")
    stop = threading.Event()

    def clips_keep_landing() -> None:
        while not stop.wait(1.0):
            room.add_clip()

    async def main() -> None:
        client = AsyncHTTPClient(max_clients=pages)
        until = time.monotonic() + seconds
        url = room.gateway.base_url + "/gallery.json"
        await asyncio.gather(*(_page(client, url, token, use_cursor, run, room, until)
                               for _ in range(pages)))

    lander = threading.Thread(target=clips_keep_landing, daemon=True)
    lander.start()
    try:
        asyncio.run(main())
    finally:
        stop.set()
        lander.join()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pages, seconds = (10, 6.0) if args.quick else (PARTICIPANTS + 1, 20.0)
    with tempfile.TemporaryDirectory() as folder, GatewayServer(
        db=f"sqlite:///{folder}/gateway.sqlite3", home=folder, upstream="demo"
    ) as gateway:
        room = Room(gateway)
        token = gateway.add_participant("projector", admin=True)
        runs = [_measure(room, token, pages, seconds, use_cursor) for use_cursor in (False, True)]
    print(f"{pages} pages polling every {POLL_SECONDS} s for {seconds:g} s each run; "
          f"{CLIPS_AT_START} clips at start, one more per second")
    for run in runs:
        print(
            f"{run.label:>8}: {run.polls} polls, {run.bytes / max(1, run.polls):,.0f} B/poll, "
            f"p50 {_pct(run.latencies_ms, 0.5):.1f} ms, p99 {_pct(run.latencies_ms, 0.99):.1f} ms;"
            f" a new clip seen after p50 {_pct(run.seen_after_s, 0.5):.2f} s,"
            f" p99 {_pct(run.seen_after_s, 0.99):.2f} s"
        )
    baseline, cursor = runs
    ratio = (cursor.bytes / cursor.polls) / (baseline.bytes / baseline.polls)
    print(f"bytes_ratio={ratio:.3f} poll_p99_ms={_pct(cursor.latencies_ms, 0.99):.1f} "
          f"seen_p99_s={_pct(cursor.seen_after_s, 0.99):.2f}")


if __name__ == "__main__":
    main()
