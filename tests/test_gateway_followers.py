"""Each unfinished task has one follower process; a live process adopts a dead one's tasks.

The rules (who beats, who is stale, who adopts what) on a fake clock, with `Followers` in
this process standing for gateway processes; concurrent claims on a throwaway PostgreSQL;
and end to end, real gateway processes with a short ``--heartbeat`` and a demo upstream:
one killed, one started on a database from before followers.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text, update

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.demo import DEMO_API_KEY, DemoServer
from runway_widget.gateway.db.database import (
    jobs,
    metadata,
    open_engine,
    processes,
    upstream_state,
)
from runway_widget.gateway.db.followers import Followers
from runway_widget.gateway.db.ledger import Ledger
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.store import JobStore
from tests.fake_clock import FakeClock
from tests.gateway_support import (
    free_port,
    needs_postgres,
    postgres_server,
    serve_processes,
    stop_process,
)

pytestmark = pytest.mark.timeout(180)

BODY = {"prompt": "adopted", "generation_type": "text2video"}


def _serve(
    url: str, upstream: str, folder: Path, name: str, *options: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``gateway serve`` on database ``url``, logging to ``gateway-NAME.log``; and its URL."""
    [served] = _serve_together(url, upstream, folder, [name], *options)
    return served


def _serve_together(
    url: str, upstream: str, folder: Path, names: list[str], *options: str
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """`_serve` for each of ``names``, the processes starting in parallel."""
    env = {"APIFRAME_API_KEY": DEMO_API_KEY, "RUNWAY_WIDGET_HOME": str(folder)}
    args = ("--db", url, "--upstream", upstream, "--rate", "100", *options)
    ports = [free_port() for _ in names]
    logs = [folder / f"gateway-{name}.log" for name in names]
    processes = serve_processes(ports, *args, env=env, logs=logs)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    return list(zip(processes, urls, strict=True))


@dataclass
class _Room:
    engine: Engine
    demo: DemoServer
    token: str
    a: subprocess.Popen[bytes]
    a_url: str
    b: subprocess.Popen[bytes]
    b_url: str


@contextlib.contextmanager
def _room(folder: Path, job_seconds: float, heartbeat: float) -> Iterator[_Room]:
    """PostgreSQL, a demo upstream, one participant, and gateway processes A and B."""
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    beats = ("--heartbeat", str(heartbeat))
    with postgres_server() as url, DemoServer(job_seconds=job_seconds) as demo:
        engine = open_engine(url)
        token = Roster(engine).add("ines", Limits(jobs=6))
        try:
            started = _serve_together(url, demo.base_url, folder, ["a", "b"], *beats)
            (a, a_url), (b, b_url) = started
            yield _Room(engine, demo, token, a, a_url, b, b_url)
        finally:
            for process, _url in started:
                stop_process(process)
            engine.dispose()


def _client(token: str, url: str, folder: Path) -> ApiframeClient:
    return ApiframeClient(token, url, store=JobStore(folder / f"{free_port()}.jsonl"))


def _followers(
    engine: Engine, task_ids: list[str], by: str = "task_id"
) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c[by], jobs.c.follower).where(jobs.c[by].in_(task_ids))
        )
        return {task_id: follower for task_id, follower in rows}


def _sent(engine: Engine, task_ids: list[str]) -> dict[str, str | None]:
    """The followers of ``task_ids`` once the queue has sent them all (each process's queue
    sends what it claims, whichever process took the submission)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        followers = _followers(engine, task_ids)
        with engine.connect() as conn:
            waiting = conn.execute(
                select(jobs.c.id).where(
                    jobs.c.task_id.in_(task_ids), jobs.c.state.in_(["queued", "sending"])
                )
            ).first()
        if waiting is None:
            return followers
        time.sleep(0.05)
    raise AssertionError("the queue did not send the jobs")


def _live_processes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(processes.c.id)).scalars())


@needs_postgres
def test_a_live_process_adopts_the_tasks_of_a_killed_one(tmp_path):
    with _room(tmp_path, job_seconds=1.5, heartbeat=0.5) as room:
        room.b.send_signal(signal.SIGSTOP)  # B's queue sleeps: A sends (and follows) all three
        task_ids = [_client(room.token, room.a_url, tmp_path).imagine(**BODY) for _ in range(3)]
        [submitter] = set(_sent(room.engine, task_ids).values())
        room.b.send_signal(signal.SIGCONT)
        room.a.send_signal(signal.SIGKILL)
        room.a.wait(10)
        killed_at = time.monotonic()
        through_b = _client(room.token, room.b_url, tmp_path)
        finished = [through_b.wait(t, timeout=60, poll_interval=0.3) for t in task_ids]
        took = time.monotonic() - killed_at
        adopters = set(_followers(room.engine, task_ids).values())
        submitted = room.demo.stats.get("/runway-imagine")
    assert submitted == 3  # adopted, never submitted again
    assert all(t.is_done and t.video_url.startswith(f"{room.b_url}/videos/") for t in finished)
    assert took < 20
    assert submitter is not None and len(adopters) == 1 and submitter not in adopters
    assert "adopted 3 task(s)" in (tmp_path / "gateway-b.log").read_text()


# -- heartbeats on a fake clock: processes are `Followers` on one database -----------------------


@contextlib.contextmanager
def _processes(folder: Path, count: int) -> Iterator[tuple[FakeClock, Ledger, list[Followers]]]:
    """``count`` processes on one database and one fake clock, each registered."""
    clock = FakeClock()
    engine = open_engine(f"sqlite:///{folder / 'gateway.sqlite3'}")
    try:
        ledger = Ledger(engine, clock)
        group = [Followers(engine, heartbeat=10, clock=clock) for _ in range(count)]
        for one in group:
            one.beat()
        yield clock, ledger, group
    finally:
        engine.dispose()


def _running(ledger: Ledger, by: Followers, count: int) -> list[str]:
    """``count`` tasks submitted (and so followed) by ``by``; their task ids."""
    roster = Roster(ledger.engine)
    who = roster.authenticate(roster.add(f"p-{by.id}", Limits()))
    assert who is not None
    task_ids = []
    for i in range(count):
        job = ledger.reserve(who.id, 5, {}, sender=by.id)
        assert ledger.accepted(job.job_id, f"{by.id}-{i}", by.id)
        task_ids.append(job.task_id)
    return task_ids


def test_live_processes_never_take_each_others_tasks_sweep_after_sweep(tmp_path):
    with _processes(tmp_path, 2) as (clock, ledger, (a, b)):
        tasks = _running(ledger, a, 2) + _running(ledger, b, 2)
        first = _followers(ledger.engine, tasks)
        adopted = []
        for _ in range(20):  # twenty beats each, well past the stale period
            clock.advance(a.heartbeat)
            adopted += a.sweep() + b.sweep()
        assert adopted == []
        assert _followers(ledger.engine, tasks) == first
        assert _live_processes(ledger.engine) == {a.id, b.id}
        assert a.taken(_sent_by(first, a)) == [] and b.taken(_sent_by(first, b)) == []
        assert len(_sent_by(first, a)) == len(_sent_by(first, b)) == 2


def test_a_clean_stop_hands_the_tasks_over_at_the_next_sweep(tmp_path):
    with _processes(tmp_path, 2) as (_clock, ledger, (a, b)):
        tasks = _running(ledger, a, 3)
        a.leave()  # no time passes: its row is gone, so its tasks are orphans at once
        adopted = {row.task_id for row in b.sweep()}
        assert adopted == set(tasks)
        assert set(_followers(ledger.engine, tasks).values()) == {b.id}
        assert not a.beat() and _live_processes(ledger.engine) == {b.id}  # it beats no more


def test_a_silent_process_is_adopted_only_once_its_beats_are_stale(tmp_path):
    with _processes(tmp_path, 2) as (clock, ledger, (a, b)):
        tasks = _running(ledger, a, 3)  # then a goes silent: killed, or frozen
        for _ in range(3):  # three missed beats: alive still, by the rule
            clock.advance(b.heartbeat)
            assert b.sweep() == []
        clock.advance(0.001)  # its last beat is now older than the stale period
        assert {row.task_id for row in b.sweep()} == set(tasks)
        assert b.sweep() == []  # adopted exactly once


def test_a_process_whose_own_beat_came_late_claims_nothing_and_hands_over(tmp_path):
    with _processes(tmp_path, 3) as (clock, ledger, (a, b, c)):
        tasks = _running(ledger, a, 2)
        orphans = _running(ledger, c, 1)
        c.leave()
        clock.advance(a.stale_seconds + 1)  # a and b both missed their beats (cut off)
        assert b.sweep() == []  # late itself: it beats, but adopts nobody's tasks
        assert {row.task_id for row in b.sweep()} == set(tasks + orphans)
        assert a.sweep() == []  # late too, back: it claims nothing either
        assert sorted(a.taken(tasks)) == sorted(tasks)  # and learns that b follows its tasks


def _sent_by(followers: dict[str, str | None], one: Followers) -> list[str]:
    return [task for task, follower in followers.items() if follower == one.id]


def _old_database(url: str) -> None:
    """The tables as an earlier version left them: jobs without ``follower``, no processes,
    and nothing of the queue (jobs known by the upstream's id alone)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX gateway_jobs_by_upstream_task"))
        for column in ("follower", "upstream_task_id", "turn", "sent_at"):
            conn.execute(text(f"ALTER TABLE gateway_jobs DROP COLUMN {column}"))
        conn.execute(text("ALTER TABLE gateway_participants DROP COLUMN queue_first"))
    processes.drop(engine)
    upstream_state.drop(engine)
    engine.dispose()


def _old_running_job(url: str, task_id: str) -> str:
    """A participant with one task submitted before the upgrade; returns their token."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    token = Roster(engine).add("old-timer", Limits(jobs=3))
    now = time.time()
    with engine.begin() as conn:
        conn.execute(text("UPDATE gateway_participants SET jobs_used = 1, running = 1"))
        conn.execute(
            text(
                "INSERT INTO gateway_jobs (participant_id, task_id, state, credits, request,"
                " status, created_at, updated_at) SELECT id, :task, 'submitted', 5, '{}',"
                " 'processing', :now, :now FROM gateway_participants"
            ),
            {"task": task_id, "now": now},
        )
    engine.dispose()
    return token


@contextlib.contextmanager
def _database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'gateway.sqlite3'}"
    else:
        with postgres_server() as url:
            yield url


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_a_database_from_before_followers_gains_the_column_and_resumes_its_tasks(tmp_path, kind):
    with _database(kind, tmp_path) as url, DemoServer(job_seconds=1.0) as demo:
        _old_database(url)
        direct = ApiframeClient(demo.api_key, demo.base_url, store=JobStore(tmp_path / "d.jsonl"))
        task_id = direct.imagine(**BODY)
        token = _old_running_job(url, task_id)
        process, gateway_url = _serve(url, demo.base_url, tmp_path, "upgraded")
        try:
            through = _client(token, gateway_url, tmp_path)
            task = through.wait(task_id, timeout=30, poll_interval=0.2)
            engine = open_engine(url)
            follower = _followers(engine, [task_id])[task_id]
            live = _live_processes(engine)
            report = Roster(engine).report()[0]
            engine.dispose()
        finally:
            stop_process(process)
    assert live == {follower}  # the column is there, and the one process follows the task
    assert task.video_url.startswith(f"{gateway_url}/videos/")
    assert (report["finished"], report["running"]) == (1, 0)
    assert "resumed 1 unfinished task(s)" in (tmp_path / "gateway-upgraded.log").read_text()


def _claim_together(claimers: list[Followers]) -> list[set[str]]:
    """Every claimer's ``claim()`` released at once; the task ids each one got."""
    barrier = threading.Barrier(len(claimers))
    claimed: list[set[str]] = [set() for _ in claimers]

    def claim(i: int) -> None:
        barrier.wait()
        claimed[i] = {str(row.upstream_task_id) for row in claimers[i].claim()}

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(claimers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return claimed


@needs_postgres
def test_concurrent_claims_split_the_orphans_and_leave_a_live_process_its_tasks():
    with postgres_server() as url:
        engine = open_engine(url)
        ledger = Ledger(engine)
        Roster(engine).add("kim", Limits())
        [kim] = Roster(engine).participants()
        live = Followers(engine, heartbeat=60)
        live.beat()
        orphans = {f"orphan-{i}": ("gone-1", "gone-2", None)[i % 3] for i in range(60)}
        owned = [f"owned-{i}" for i in range(10)]
        for task_id, follower in [*orphans.items(), *((t, live.id) for t in owned)]:
            job = ledger.reserve(kim["id"], 5, {}, sender=follower or "")
            ledger.accepted(job.job_id, task_id, follower or "")
        for round_ in range(5):
            with engine.begin() as conn:
                for task_id, follower in orphans.items():
                    conn.execute(
                        update(jobs)
                        .where(jobs.c.upstream_task_id == task_id)
                        .values(follower=follower)
                    )
            claimers = [Followers(engine, heartbeat=60) for _ in range(2)]
            for claimer in claimers:
                claimer.beat()
            claimed = _claim_together(claimers)
            assert not claimed[0] & claimed[1], f"round {round_}: one task adopted twice"
            assert claimed[0] | claimed[1] == set(orphans)
            followers = _followers(engine, [*orphans, *owned], by="upstream_task_id")
            assert {followers[t] for t in owned} == {live.id}
            assert all(followers[t] == claimers[0].id for t in claimed[0])
            assert all(followers[t] == claimers[1].id for t in claimed[1])
        engine.dispose()
