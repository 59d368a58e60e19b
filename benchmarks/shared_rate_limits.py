"""What a request pays for rate limits that replicas share, next to one process's own.

P participants each send R requests, in turns (each one's requests are spread out, as a
room polling once a second is), through a `RateLimiter` as the gateway builds it:

(a) memory: one process's buckets (SQLite deployments);
(b) shared, lease L: PostgreSQL buckets, a replica taking L tokens at a time (the gateway's
    lease is a quarter of the burst: 5 of 20);
(c) shared, lease 1: a database trip on every request.

The shared runs call the database from a pool of threads, as the gateway does, so the
figure is what the event loop waits per request. For scale, the token check every request
on PostgreSQL already makes (one indexed read, `RawTokenReader`) is timed the same way.
Prints microseconds per request, database trips per request, ratios, and the load average.

    python benchmarks/shared_rate_limits.py            # 200 participants x 20 requests
    python benchmarks/shared_rate_limits.py --quick    # 50 x 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/

from runway_widget.gateway.db.buckets import SharedBuckets
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.raw_statements import RawStatements
from runway_widget.gateway.db.roster import Limits, RawTokenReader, Roster
from runway_widget.gateway.ratelimit import MemoryBuckets, RateLimiter
from tests.gateway_support import postgres_server

RATE, BURST = 10.0, 20  # the gateway's defaults (serve --rate 10)
LEASE = BURST // 4
WORKERS = 4  # the gateway's database pool


class Counted(SharedBuckets):
    trips = 0

    def take(self, key: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        Counted.trips += 1
        return super().take(key, rate, burst, want)


async def _requests(limiter: RateLimiter, participants: int, each: int) -> list[float]:
    """Microseconds the loop waited for each request's answer."""
    waited = []
    for _ in range(each):
        for who in range(participants):
            started = time.perf_counter()
            await limiter.retry_after(who)
            waited.append(1e6 * (time.perf_counter() - started))
    return waited


def _limiter(buckets: Any, lease: int, pool: ThreadPoolExecutor) -> RateLimiter:
    async def run(call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, call, *args)

    return RateLimiter(RATE, BURST, buckets=buckets, lease=lease, run=run)


async def _token_reads(read: RawTokenReader, token: str, count: int, pool: ThreadPoolExecutor
                       ) -> list[float]:
    loop = asyncio.get_running_loop()
    waited = []
    for _ in range(count):
        started = time.perf_counter()
        await loop.run_in_executor(pool, read, token)
        waited.append(1e6 * (time.perf_counter() - started))
    return waited


def _line(label: str, waited: list[float], trips: int | None = None) -> str:
    ordered = sorted(waited)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    per = f"; {trips / len(waited):.2f} database trips a request" if trips is not None else ""
    return (
        f"  {label:<22} mean {statistics.fmean(waited):8.1f} µs  p50 "
        f"{statistics.median(waited):8.1f} µs  p99 {p99:8.1f} µs{per}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 participants x 10 requests")
    args = parser.parse_args()
    participants, each = (50, 10) if args.quick else (200, 20)
    print(f"{participants} participants x {each} requests; rate {RATE:g}/s, burst {BURST}")
    own = RateLimiter(RATE, BURST, buckets=MemoryBuckets())
    memory = asyncio.run(_requests(own, participants, each))
    print(_line("memory", memory))
    results = {}
    with postgres_server() as url, ThreadPoolExecutor(WORKERS) as pool:
        engine = open_engine(url)
        for lease in (LEASE, 1):
            Counted.trips = 0
            buckets = Counted(engine)
            with engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE gateway_rate_buckets")
            waited = asyncio.run(_requests(_limiter(buckets, lease, pool), participants, each))
            results[lease] = waited
            print(_line(f"shared, lease {lease}", waited, Counted.trips))
        roster = Roster(engine)
        token = roster.add("someone", Limits())
        read = RawTokenReader(RawStatements(engine))
        reads = asyncio.run(_token_reads(read, token, participants * each // 4, pool))
        print(_line("token check (for scale)", reads))
        engine.dispose()
    lease_mean = statistics.fmean(results[LEASE])
    print(
        f"shared lease {LEASE} / memory: {lease_mean / statistics.fmean(memory):.0f}x; "
        f"shared lease {LEASE} / lease 1: {lease_mean / statistics.fmean(results[1]):.2f}; "
        f"shared lease {LEASE} / token check: {lease_mean / statistics.fmean(reads):.2f}"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
