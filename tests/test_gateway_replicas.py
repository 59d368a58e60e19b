"""Replicas on one PostgreSQL are one gateway: whichever replica answers, the rate limits,
the join guard, a browser's sign-in, the clips, the gallery and the quotas are the same.

Two gateways in this process, each with its own engine, event loop, poller and lanes, on a
throwaway PostgreSQL (a fresh database per test) and one demo upstream; the clip folder is
one both use, as replicas mount one volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests

from runway_widget.demo import DemoServer
from runway_widget.gateway.app import GatewayServer
from runway_widget.gateway.db.buckets import SharedBuckets
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.roster import Limits
from runway_widget.gateway.ratelimit import WRONG_JOINS, RateLimiter
from runway_widget.gateway.upstream import Upstream
from tests.gateway_support import (
    gateway_on,
    needs_postgres,
    post_join,
    postgres_server,
    upstream_client,
)

pytestmark = [needs_postgres, pytest.mark.timeout(120)]

_databases = itertools.count(1)
NEVER = 1e-9  # a refill rate that gives nothing back within a test
JOB = {"prompt": "a harbour at dawn", "generation_type": "text2video"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
def database(server: str) -> str:
    """A database of its own on the module's server."""
    name = f"replicas_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


class CountedBuckets(SharedBuckets):
    """The shared buckets, counting the database trips of `take`."""

    takes = 0

    def take(self, key: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        self.takes += 1
        return super().take(key, rate, burst, want)


@contextlib.contextmanager
def replicas(folder: Path, url: str, **options: object) -> Iterator[list[GatewayServer]]:
    """Two gateways on ``url`` and one demo upstream, sharing a clip folder."""
    with DemoServer(job_seconds=0.5) as demo, contextlib.ExitStack() as stack:
        gateways = []
        for name in "ab":
            home = folder / name
            home.mkdir()
            upstream = Upstream(upstream_client(demo.base_url, demo.api_key, home))
            gateways.append(
                stack.enter_context(
                    gateway_on(upstream, home, db=url, clips=folder / "clips", **options)
                )
            )
        yield gateways


def test_shared_buckets_hand_out_one_burst_to_every_replica_together(database):
    engines = [open_engine(database) for _ in range(2)]
    taken: list[int] = []

    def take(buckets: SharedBuckets) -> None:
        for _ in range(10):
            taken.append(buckets.take("alice", NEVER, 25, 1)[0])

    threads = [
        threading.Thread(target=take, args=(SharedBuckets(engine),))
        for engine in engines
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert len(taken) == 80 and sum(taken) == 25


def test_a_full_bucket_is_pruned_and_comes_back_full(database):
    engine = open_engine(database)
    buckets = SharedBuckets(engine)
    assert buckets.take("quick", 1e9, 3, 2) == (2, 1.0)
    assert buckets.prune() == 1  # a nanosecond later it is full again: the row goes
    assert buckets.take("quick", NEVER, 3, 5)[0] == 3
    assert buckets.prune() == 0
    engine.dispose()


def test_a_guesser_gets_ten_wrong_codes_whichever_replica_it_asks(tmp_path, database):
    with replicas(tmp_path, database) as (a, b):
        a.roster.add_join_code("ROOM-4242", 5, Limits(jobs=1))
        statuses = [
            post_join(gateway.base_url, f"{n:04d}", "guess").status_code
            for n, gateway in zip(range(16), itertools.cycle((a, b)))
        ]
        other = post_join(b.base_url, "ROOM-4242", "neighbour", source="127.0.0.6")
    assert statuses == [403] * WRONG_JOINS[1] + [429] * 6
    assert other.status_code == 200


def test_a_participant_has_one_rate_budget_across_replicas(tmp_path, database):
    burst = 8
    with replicas(tmp_path, database, rate=NEVER, burst=burst) as (a, b):
        token = a.add_participant("alice")
        headers = {"Authorization": token}
        replies = [
            requests.get(gateway.base_url + "/account", headers=headers, timeout=10)
            for _, gateway in zip(range(30), itertools.cycle((a, b)))
        ]
    statuses = [reply.status_code for reply in replies]
    assert statuses == [200] * burst + [429] * (30 - burst)
    assert {reply.json()["errors"][0]["code"] for reply in replies[burst:]} == {"rate_limited"}


def test_a_replica_asks_the_database_once_per_lease_and_not_at_all_when_its_own_is_empty(
    database,
):
    engine = open_engine(database)
    buckets = CountedBuckets(engine)

    async def hundred() -> list[int]:
        limiter = RateLimiter(NEVER, 8, buckets=buckets, lease=4)
        return [await limiter.retry_after("alice") for _ in range(100)]

    waits = asyncio.run(hundred())
    engine.dispose()
    assert waits[:8] == [0] * 8 and all(wait > 0 for wait in waits[8:])
    assert buckets.takes == 2  # two leases of four; the other 92 refused without a trip


def test_requests_arriving_together_share_one_lease_instead_of_draining_the_bucket(database):
    engine = open_engine(database)
    buckets = CountedBuckets(engine)

    async def together() -> list[int]:
        pool = ThreadPoolExecutor(4)  # as the gateway's database pool

        async def run(call, *args):
            return await asyncio.get_running_loop().run_in_executor(pool, call, *args)

        limiter = RateLimiter(NEVER, 20, buckets=buckets, lease=5, run=run)
        return await asyncio.gather(*(limiter.retry_after("alice") for _ in range(20)))

    waits = asyncio.run(together())
    engine.dispose()
    assert waits == [0] * 20 and buckets.takes == 4


def test_a_browser_signed_in_on_one_replica_is_known_to_the_other(tmp_path, database):
    with replicas(tmp_path, database, cookie_secret=b"s" * 32) as (a, b):
        token = a.add_participant("teacher", admin=True)
        browser = requests.Session()
        page = browser.get(a.base_url + "/gallery", params={"token": token}, timeout=10)
        feed = browser.get(b.base_url + "/gallery.json", timeout=10)
    assert page.status_code == 200 and browser.cookies
    assert feed.status_code == 200 and feed.json()["scope"] == "room"


def test_a_clip_made_through_one_replica_plays_and_shows_on_the_other(tmp_path, database):
    with replicas(tmp_path, database) as (a, b):
        admin = {"Authorization": a.add_participant("teacher", admin=True)}
        alice = {"Authorization": a.add_participant("alice", jobs=1)}
        sent = requests.post(a.base_url + "/runway-imagine", json=JOB, headers=alice, timeout=30)
        task_id = sent.json()["task_id"]
        over = requests.post(b.base_url + "/runway-imagine", json=JOB, headers=alice, timeout=30)
        task = _until_stored(b, task_id, alice)
        path = task["video_url"].split(b.base_url, 1)[1]
        whole = requests.get(a.base_url + path, timeout=10).content
        part = requests.get(b.base_url + path, headers={"Range": "bytes=4-11"}, timeout=10)
        feed = requests.get(b.base_url + "/gallery.json", headers=admin, timeout=10).json()
        metrics = {g: _metrics(g, admin) for g in (a, b)}
    assert over.status_code == 403 and over.json()["errors"][0]["limit"] == "jobs"
    assert whole[4:8] == b"ftyp"
    assert part.status_code == 206 and part.content == whole[4:12]
    assert [clip["participant"] for clip in feed["clips"]] == ["alice"]
    assert feed["clips"][0]["video_url"] == path.lstrip("/")
    assert metrics[a]["runway_gateway_submissions_total"] == 1.0
    assert metrics[b]['runway_gateway_refusals_total{code="quota_exceeded"}'] == 1.0
    assert metrics[a]['runway_gateway_upstream_requests_total{call="poll"}'] >= 1
    assert metrics[a]['runway_gateway_upstream_requests_total{call="clip"}'] == 1.0
    for gateway in (a, b):  # the folder is one: both count the clip
        assert metrics[gateway]["runway_gateway_clip_store_clips"] == 1.0
        assert metrics[gateway]["runway_gateway_clip_store_bytes"] == len(whole)


def _until_stored(gateway: GatewayServer, task_id: str, headers: dict[str, str]) -> dict:
    """The task through ``gateway`` once its clip is stored."""
    for _ in range(600):
        task = requests.post(
            gateway.base_url + "/fetch", json={"task_id": task_id}, headers=headers, timeout=10
        ).json()
        if task.get("video_url"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"the clip of {task_id} was not stored: {task}")


def _metrics(gateway: GatewayServer, headers: dict[str, str]) -> dict[str, float]:
    reply = requests.get(gateway.base_url + "/metrics", headers=headers, timeout=10)
    reply.raise_for_status()
    samples = {}
    for line in reply.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
