"""The queue's scheduler on a fake clock: fair order, no starvation, a learned limit, pauses.

The ledger and the queue are the real ones, on a real database; what is faked is the world
outside them: a provider (`FakeProvider`) that runs so many jobs at once for so long and
answers "busy" past that, and the time, passed to every call that reads it. Each round of
`drive` does what a gateway process does: record the jobs that ended, claim what the limit
has room for, send it, record the answer.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, update

from runway_widget.gateway.db.database import jobs, open_engine
from runway_widget.gateway.db.followers import Followers
from runway_widget.gateway.db.ledger import Ledger, Reservation
from runway_widget.gateway.db.limit_row import write_stated
from runway_widget.gateway.db.queue import AGING_SECONDS, JobQueue, QueuedJob
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.models import Task
from tests.fake_clock import FakeClock
from tests.gateway_support import needs_postgres, postgres_server

pytestmark = pytest.mark.timeout(120)

T0 = 1_000_000.0  # the fake clock's start


@dataclass
class FakeProvider:
    """Runs at most ``limit`` jobs at once (None: any number), each for ``seconds``; past
    the limit it answers "busy" with a Retry-After of the seconds until a slot frees."""

    limit: int | None
    seconds: float
    running: dict[str, float] = field(default_factory=dict)  # upstream id: ends at
    done: list[str] = field(default_factory=list)  # ended, not reported by `ended` yet
    peak: int = 0
    busy: int = 0
    taken: int = 0
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, now: float) -> tuple[str | None, float]:
        """The new task's id, or None and the Retry-After."""
        with self._lock:
            self._expire(now)
            if self.limit is not None and len(self.running) >= self.limit:
                self.busy += 1
                return None, float(max(1, math.ceil(min(self.running.values()) - now)))
            task_id = f"up-{next(self._ids)}"
            self.running[task_id] = now + self.seconds
            self.taken += 1
            self.peak = max(self.peak, len(self.running))
            return task_id, 0.0

    def ended(self, now: float) -> list[str]:
        """The jobs that ended by ``now`` (or that a submit saw end), each reported once."""
        with self._lock:
            self._expire(now)
            done, self.done = self.done, []
            return done

    def _expire(self, now: float) -> None:
        for task_id, ends in list(self.running.items()):
            if ends <= now:
                del self.running[task_id]
                self.done.append(task_id)


@dataclass
class Room:
    """One gateway process's view of the ledger: participants, their jobs, the queue."""

    engine: Engine
    sender: str = "this-process"

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.engine)
        self.queue = JobQueue(self.engine)
        self.roster = Roster(self.engine)
        self.sent: list[tuple[float, str]] = []  # (when, the participant's task id)
        self.unwritten: list[Task] = []  # updates the database could not take: written again

    def person(self, name: str) -> int:
        who = self.roster.authenticate(self.roster.add(name, Limits()))
        assert who is not None
        return who.id

    def submit(self, who: int, at: float) -> Reservation:
        """A job reserved at fake time ``at``."""
        reserved = self.ledger.reserve(who, 5, {"prompt": "p", "generation_type": "text2video"})
        with self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == reserved.job_id).values(created_at=at))
        return reserved

    def round(self, provider: FakeProvider, now: float) -> None:
        """What a process does at ``now``: record ends, claim, send, record answers."""
        ended = [
            Task(t, "finished", 100, video_url=f"https://cdn.test/{t}.mp4")
            for t in provider.ended(now)
        ]
        if ended or self.unwritten:  # as the gateway's updates thread does
            self.unwritten = self.ledger.update_tasks([*self.unwritten, *ended]).retry
        for job in self.queue.claim(self.sender, now=now).jobs:
            self.send(job, provider, now)

    def send(self, job: QueuedJob, provider: FakeProvider, now: float) -> None:
        upstream_id, retry_after = provider.submit(now)
        if upstream_id is None:
            self.queue.busy(job, retry_after, now=now)
            return
        assert self.ledger.accepted(job.job_id, upstream_id, self.sender)
        self.queue.went_through()
        self.sent.append((now, job.task_id))

    def drive(self, provider: FakeProvider, start: float, until: float, step: float = 0.1) -> None:
        for tick in range(int((until - start) / step) + 1):
            self.round(provider, start + tick * step)

    def queued(self) -> int:
        return int(self.queue.status(now=T0)["queued"])


@pytest.fixture
def room(tmp_path) -> Iterator[Room]:
    engine = open_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    yield Room(engine)
    engine.dispose()


def test_round_robin_everyones_first_job_before_anyones_second(room):
    write_stated(room.engine, 1)  # one at a time: the order is the whole story
    ada, bo, cy = (room.person(name) for name in ("ada", "bo", "cy"))
    names = {}
    for at, (who, label) in enumerate(
        [(ada, "a1"), (ada, "a2"), (ada, "a3"), (ada, "a4"), (bo, "b1"), (cy, "c1"), (cy, "c2")]
    ):
        names[room.submit(who, T0 + at * 0.1).task_id] = label
    before = room.queue.snapshot(now=T0 + 1)
    room.drive(FakeProvider(limit=None, seconds=1.0), T0 + 1, T0 + 10)
    order = [names[task_id] for _at, task_id in room.sent]
    assert order == ["a1", "b1", "c1", "a2", "c2", "a3", "a4"]
    assert sorted(before.positions, key=before.positions.get) == [
        task_id for _at, task_id in room.sent
    ]  # the places participants were told are the order they were served in


def test_a_job_waiting_long_moves_ahead_of_newcomers_nothing_starves(room):
    write_stated(room.engine, 2)
    ada = room.person("ada")
    room.submit(ada, T0)  # ada's first job runs for ever (a slot she holds)
    provider = FakeProvider(limit=None, seconds=1.0)
    first = room.queue.claim(room.sender, now=T0).jobs
    provider.running["forever"] = math.inf
    assert room.ledger.accepted(first[0].job_id, "forever", room.sender)
    second = room.submit(ada, T0 + 1).task_id  # her second waits for the other slot
    newcomers: dict[str, float] = {}
    now = T0 + 1
    while not any(task_id == second for _at, task_id in room.sent):
        assert now < T0 + 10 * AGING_SECONDS, "ada's second job starved"
        for _ in range(2):  # two first jobs a second, for one slot a second: the room grows
            newcomers[room.submit(room.person(f"p{len(newcomers)}"), now).task_id] = now
        room.round(provider, now)
        now += 1.0
    ahead = [task_id for _at, task_id in room.sent[: room.sent.index((now - 1.0, second))]]
    # everyone served before her came at most one aging period after her job
    assert max(newcomers[t] for t in ahead if t in newcomers) <= T0 + 1 + AGING_SECONDS
    assert room.queued() > 0  # she was not served because the room ran dry


def test_the_limit_is_learned_from_busy_answers_with_few_of_them(room):
    provider = FakeProvider(limit=4, seconds=2.0)
    people = [room.person(f"p{i}") for i in range(50)]
    for i in range(200):
        room.submit(people[i % 50], T0 + i * 0.01)
    room.drive(provider, T0 + 2, T0 + 200)
    finished = room.sent[-1][0] - T0
    status = room.queue.status(now=T0 + 200)
    assert provider.taken == 200 and room.queued() == 0
    assert provider.busy <= 200 / 20  # at most one "busy" in 20 jobs
    assert status["limit"] in (4, 5) and not status["limit_stated"]
    assert finished <= 1.2 * (200 / 4) * 2.0  # within 20 % of four slots always full


def test_a_stated_limit_is_never_passed_and_never_met_with_busy(room):
    write_stated(room.engine, 4)
    provider = FakeProvider(limit=4, seconds=2.0)
    people = [room.person(f"p{i}") for i in range(30)]
    for i, who in enumerate(people):
        room.submit(who, T0 + i * 0.01)
    room.drive(provider, T0 + 1, T0 + 40)
    assert (provider.taken, provider.busy, provider.peak) == (30, 0, 4)


def test_a_restart_takes_the_queue_up_and_never_resends_what_was_being_sent(room):
    people = [room.person(f"p{i}") for i in range(5)]
    for i, who in enumerate(people):
        room.submit(who, T0 + i)
    in_flight, *others = room.queue.claim("killed-process", now=T0 + 10).jobs
    room.queue.unsent(others)  # that process was killed while sending only the first
    restarted = Room(room.engine, "restarted-process")  # a new process on the same database
    assert restarted.queue.lost_sends(None) == 1  # one process per SQLite file: all lost
    assert restarted.ledger.job(in_flight.task_id).state == "unknown"
    provider = FakeProvider(limit=None, seconds=1.0)
    restarted.drive(provider, T0 + 20, T0 + 30)
    sent = [task_id for _at, task_id in restarted.sent]
    assert len(sent) == len(set(sent)) == 4 == provider.taken  # the rest, once each
    assert in_flight.task_id not in sent  # it may have gone out: never again


def test_a_send_is_lost_only_once_its_process_has_missed_its_beats(room):
    clock = FakeClock(T0)
    sender = Followers(room.engine, heartbeat=10, clock=clock)  # the process sending it
    sender.beat()
    reserved = room.submit(room.person("ada"), T0)
    [job] = room.queue.claim(sender.id, now=T0).jobs  # then the process goes silent
    queue = JobQueue(room.engine, clock)  # as a peer's sweep sees it
    clock.advance(sender.stale_seconds)  # alive still, by the rule: its send may be under way
    assert queue.lost_sends(sender.stale_seconds) == 0
    assert room.ledger.job(reserved.task_id).state == "sending"
    clock.advance(0.001)
    assert queue.lost_sends(sender.stale_seconds) == 1
    assert room.ledger.job(job.task_id).state == "unknown"  # it may have gone out: never again


def test_retry_after_pauses_every_process_sharing_the_database(room):
    people = [room.person(f"p{i}") for i in range(3)]
    for i, who in enumerate(people):
        room.submit(who, T0 + i)
    [job, *others] = room.queue.claim(room.sender, now=T0 + 10).jobs
    room.queue.unsent(others)  # only the first went out
    room.queue.busy(job, retry_after=7.0, now=T0 + 10)
    other = JobQueue(room.engine)  # another process's queue on the same database
    early = other.claim("other-process", now=T0 + 16.9)
    assert early.jobs == [] and early.wait == pytest.approx(0.1)
    later = other.claim("other-process", now=T0 + 17.0)
    assert job.job_id in [claimed.job_id for claimed in later.jobs]  # it kept its place
    assert later.jobs[0].job_id == job.job_id


def test_a_cancel_and_a_claim_racing_never_both_win(room):
    who = room.person("ada")
    reserved = room.submit(who, T0)
    claimed = room.queue.claim(room.sender, now=T0 + 1).jobs
    assert room.ledger.cancel(who, reserved.task_id).state == "sending"  # too late: sent
    room.queue.unsent(claimed)  # it was not taken after all: back in the queue
    assert room.ledger.cancel(who, reserved.task_id).state == "cancelled"
    assert room.queue.claim(room.sender, now=T0 + 2).jobs == []
    account = room.ledger.account(who)
    assert account is not None and (account["jobs_used"], account["running"]) == (0, 0)


# -- two processes on one PostgreSQL -------------------------------------------------------------


@contextlib.contextmanager
def _two_processes() -> Iterator[tuple[Room, Room]]:
    with postgres_server() as url:
        engines = [open_engine(url), open_engine(url)]  # two pools: two processes' connections
        try:
            yield Room(engines[0], "process-a"), Room(engines[1], "process-b")
        finally:
            for engine in engines:
                engine.dispose()


@needs_postgres
def test_two_processes_never_send_a_job_twice_nor_pass_the_limit_together():
    with _two_processes() as (a, b):
        write_stated(a.engine, 3)
        provider = FakeProvider(limit=None, seconds=0.3)  # it would take any number
        people = [a.person(f"p{i}") for i in range(12)]
        for i in range(60):
            (a if i % 2 else b).submit(people[i % 12], T0 + i * 0.01)
        barrier = threading.Barrier(2)
        failures: list[BaseException] = []
        ticks = itertools.count()
        clock = threading.Lock()

        def run(room: Room) -> None:
            try:
                barrier.wait()
                for _ in range(2000):  # a bound only: the jobs need some 150 rounds in all
                    if provider.taken == 60:
                        return
                    with clock:  # one fake clock for both: each round moves it on
                        now = T0 + 1 + next(ticks) * 0.05
                    room.round(provider, now)
            except BaseException as exc:  # reported below, not lost in the thread
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(room,)) for room in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        sent = [task_id for room in (a, b) for _at, task_id in room.sent]
        assert len(sent) == len(set(sent)) == 60 == provider.taken  # each job once
        assert provider.peak <= 3  # the two together never passed the limit
        assert a.sent and b.sent  # and both did send
