"""The queue in front of the upstream, in the ledger: fair order, claims, and what comes back.

A reserved job waits as ``queued`` until the upstream has a slot for it. Any gateway process
sharing the database may send it. `JobQueue.claim` takes the lock of the one
``gateway_upstream`` row (see ``limit_row``), counts the jobs running upstream (``sending``
and ``submitted``), and moves as many queued jobs as the limit leaves room for to
``sending``, with one conditional ``UPDATE … WHERE state = 'queued'``, all in one
transaction. Claims from several processes wait on that one lock, so together they never
pass the limit, and no job is claimed twice. A cancel racing a claim finds the job sent
(or the claim finds it cancelled), never both.

After the send, a job goes on to ``submitted`` (the ledger's `accepted`), ``refused`` or
``unknown``, or back to ``queued`` — only when the upstream certainly did not take it:
"busy" (`busy`), unreachable or a lane with no room (`unsent`). It keeps its place. A job
left in ``sending`` by a process that died is ``unknown`` (`lost_sends`): it may have
gone out, so it is never sent again.

The order (`fair_order`), the same for claims and for the positions participants see:

1. jobs of participants an admin put first (``queue_first``), for a demo on the projector;
2. then by turn minus waiting: a job's turn is how many of its owner's jobs were waiting or
   running when it came (round-robin: everyone's first job before anyone's second), and
   each `AGING_SECONDS` waited count as one turn less, so nothing waits forever;
3. then the oldest first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select, true, update

from ...models import GenerationRequest
from ..upstream_limit import UpstreamLimit
from .database import JobState, jobs, participants, processes
from .limit_row import limit_of, locked_limit, store_limit

__all__ = ["AGING_SECONDS", "Claim", "JobQueue", "QueueSnapshot", "QueuedJob"]

AGING_SECONDS = 60.0  # waiting this long counts as one turn earlier
LOST_SEND = (
    "the gateway process sending this job stopped before the upstream answered: it may or "
    "may not have been created, so it is not sent again"
)

_j, _p = jobs.c, participants.c
_RUNNING_UPSTREAM = (JobState.SENDING, JobState.SUBMITTED)
_ANY_QUEUED = select(_j.id).where(_j.state == JobState.QUEUED).limit(1)
_COUNT_RUNNING = select(func.count()).where(_j.state.in_(_RUNNING_UPSTREAM))


def fair_order(now: float) -> list[ColumnElement[Any]]:
    """ORDER BY terms: put first, then turn minus aging, then the oldest (see above)."""
    first = func.coalesce(_p.queue_first, False)
    aged = func.coalesce(_j.turn, 0) - (now - _j.created_at) / AGING_SECONDS
    return [first.desc(), aged.asc(), _j.created_at.asc(), _j.id.asc()]


@dataclass(frozen=True)
class QueuedJob:
    """A job claimed for sending: what to send, and when it was claimed."""

    job_id: int
    participant_id: int
    task_id: str
    payload: dict[str, Any]
    sent_at: float

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest.from_payload(self.payload)


@dataclass(frozen=True)
class Claim:
    """Jobs claimed now; ``wait``: seconds until a pause ends (None: wait for news)."""

    jobs: list[QueuedJob] = field(default_factory=list)
    wait: float | None = None


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue as it stood at ``taken``: each waiting task's position (1 is next)."""

    positions: dict[str, int] = field(default_factory=dict)
    oldest: float | None = None  # created_at of the job waiting longest
    taken: float = 0.0

    @property
    def length(self) -> int:
        return len(self.positions)

    def oldest_wait(self, now: float) -> float | None:
        return None if self.oldest is None else max(0.0, now - self.oldest)


class JobQueue:
    """Claims, returns and orders the queued jobs of the ledger's database; ``now`` is
    ``clock()`` unless given (a wall clock: pauses and ages are shared across processes)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def claim(self, sender: str, now: float | None = None) -> Claim:
        """Claim for ``sender`` (a process id) the next jobs the limit has room for."""
        now = self.clock() if now is None else now
        with self.engine.connect() as conn:  # a read first: a queue that cannot move
            seen = _room(conn, limit_of(conn), now)  # takes no lock
            idle = conn.execute(_ANY_QUEUED).first() is None
        if idle or seen.wait is not None or seen.room <= 0:
            return Claim(wait=seen.wait)
        with self.engine.begin() as conn:
            locked = _room(conn, locked_limit(conn), now)
            room = locked.room
            if locked.wait is not None or room <= 0:
                return Claim(wait=locked.wait)
            picked = (
                conn.execute(
                    select(_j.id)
                    .join(participants, _p.id == _j.participant_id)
                    .where(_j.state == JobState.QUEUED)
                    .order_by(*fair_order(now))
                    .limit(room)
                )
                .scalars()
                .all()
            )
            if not picked:
                return Claim()
            rows = conn.execute(
                update(jobs)
                .where(_j.id.in_(picked), _j.state == JobState.QUEUED)
                .values(state=JobState.SENDING, follower=sender, sent_at=now, updated_at=now)
                .returning(_j.id, _j.participant_id, _j.task_id, _j.request)
            ).all()
        order = {job_id: index for index, job_id in enumerate(picked)}
        claimed = [
            QueuedJob(row.id, row.participant_id, row.task_id, _payload(row.request), now)
            for row in rows
        ]
        return Claim(sorted(claimed, key=lambda job: order[job.job_id]))

    def busy(
        self, job: QueuedJob, retry_after: float | None, now: float | None = None
    ) -> UpstreamLimit:
        """The upstream answered "busy": the job goes back to its place, the window comes
        down and everyone pauses (see ``upstream_limit``). Returns the limit now."""
        now = self.clock() if now is None else now
        with self.engine.begin() as conn:
            limit, stated = locked_limit(conn)
            others = conn.execute(
                select(func.count()).where(_j.state.in_(_RUNNING_UPSTREAM), _j.id != job.job_id)
            ).scalar_one()
            after = limit.busy(job.sent_at, now, retry_after, stated, int(others))
            store_limit(conn, limit, after)
            self._back(conn, [job.job_id], now)
        return after

    def unsent(
        self,
        queued: Sequence[QueuedJob],
        *,
        pause: bool = False,
        retry_after: float | None = None,
        now: float | None = None,
    ) -> None:
        """These jobs were certainly not taken (the upstream unreachable, no room to send
        them): back to their places; with ``pause``, everyone waits before the next try."""
        now = self.clock() if now is None else now
        with self.engine.begin() as conn:
            if pause:
                limit, _stated = locked_limit(conn)
                store_limit(conn, limit, limit.unreachable(now, retry_after))
            self._back(conn, [job.job_id for job in queued], now)

    def went_through(self) -> None:
        """A submission was taken: see `UpstreamLimit.accepted` (the row is locked only
        while it may change something)."""
        with self.engine.begin() as conn:
            seen, _stated = limit_of(conn)
            if seen.threshold is not None and seen.busy_streak == 0:
                return
            limit, stated = locked_limit(conn)
            running = conn.execute(_COUNT_RUNNING).scalar_one()
            store_limit(conn, limit, limit.accepted(int(running), stated))

    def lost_sends(self, stale_seconds: float | None) -> int:
        """Jobs left ``sending`` by a process that is gone (all of them: ``stale_seconds``
        None, one process per database) are ``unknown`` now; returns how many."""
        if stale_seconds is None:
            gone: ColumnElement[bool] = true()
        else:
            live = select(processes.c.id).where(
                processes.c.heartbeat_at >= self.clock() - stale_seconds
            )
            gone = _j.follower.is_(None) | _j.follower.not_in(live)
        now = self.clock()
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(jobs)
                .where(_j.state == JobState.SENDING, gone)
                .values(state=JobState.UNKNOWN, message=LOST_SEND, updated_at=now)
                .returning(_j.participant_id)
            ).all()
            for row in rows:
                conn.execute(
                    update(participants)
                    .where(_p.id == row.participant_id)
                    .values(running=_p.running - 1)
                )
        return len(rows)

    def snapshot(self, now: float | None = None) -> QueueSnapshot:
        """Every waiting task's position, in the order claims take them."""
        now = self.clock() if now is None else now
        rows = self._in_order(now)
        positions = {row.task_id: index for index, row in enumerate(rows, start=1)}
        oldest = min((row.created_at for row in rows), default=None)
        return QueueSnapshot(positions, oldest, now)

    def waiting(self, now: float | None = None) -> list[dict[str, Any]]:
        """Each waiting job in order: its ``place``, ``participant_id`` and ``name``,
        ``task_id``, seconds ``waited``, and whether its owner was put ``first``."""
        now = self.clock() if now is None else now
        return [
            {
                "place": place,
                "participant_id": row.participant_id,
                "name": row.name,
                "task_id": row.task_id,
                "waited": max(0.0, now - row.created_at),
                "first": bool(row.first),
            }
            for place, row in enumerate(self._in_order(now), start=1)
        ]

    def _in_order(self, now: float) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(
                        _j.task_id,
                        _j.created_at,
                        _j.participant_id,
                        _p.name,
                        _p.queue_first.label("first"),
                    )
                    .join(participants, _p.id == _j.participant_id)
                    .where(_j.state == JobState.QUEUED)
                    .order_by(*fair_order(now))
                ).all()
            )

    def status(self, now: float | None = None) -> dict[str, Any]:
        """For people (``/admin``, the gallery, ``gateway queue``): how long the queue is,
        the longest wait, what runs upstream, the limit and any pause."""
        now = self.clock() if now is None else now
        with self.engine.connect() as conn:
            waiting, oldest = conn.execute(
                select(func.count(), func.min(_j.created_at)).where(_j.state == JobState.QUEUED)
            ).one()
            running = conn.execute(_COUNT_RUNNING).scalar_one()
            limit, stated = limit_of(conn)
        return {
            "queued": int(waiting),
            "oldest_wait": None if oldest is None else round(max(0.0, now - oldest), 1),
            "running_upstream": int(running),
            "limit": limit.slots(stated),
            "limit_stated": stated is not None,
            "paused_for": round(max(0.0, limit.paused_until - now), 1),
            "busy_answers": limit.busy_total,
        }

    def put_first(self, who: int | str, first: bool = True) -> str | None:
        """Put a participant's jobs at the head of the queue (or back in line); ``who`` is
        their id, or their name exactly as listed. Returns their name; None: nobody."""
        where = _p.id == who if isinstance(who, int) else _p.name == who
        with self.engine.begin() as conn:
            done = conn.execute(
                update(participants)
                .where(where)
                .values(queue_first=first or None)
                .returning(_p.name)
            ).first()
        return None if done is None else str(done.name)

    @staticmethod
    def _back(conn: Any, job_ids: Sequence[int], now: float) -> None:
        if job_ids:
            conn.execute(
                update(jobs)
                .where(_j.id.in_(list(job_ids)), _j.state == JobState.SENDING)
                .values(state=JobState.QUEUED, follower=None, sent_at=None, updated_at=now)
            )


@dataclass(frozen=True)
class _Room:
    room: int  # jobs the limit has room for now
    wait: float | None  # seconds until a pause ends (None: not paused)


def _room(conn: Any, shared: tuple[UpstreamLimit, int | None], now: float) -> _Room:
    limit, stated = shared
    if limit.paused_until > now:
        return _Room(0, limit.paused_until - now)
    running = conn.execute(_COUNT_RUNNING).scalar_one()
    return _Room(limit.slots(stated) - int(running), None)


def _payload(text: str) -> dict[str, Any]:
    payload = json.loads(text)
    return payload if isinstance(payload, dict) else {}
