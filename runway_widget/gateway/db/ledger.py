"""The quota ledger: reserve before the upstream submit, settle after it, follow each job.

Every quota check is one conditional ``UPDATE`` inside ``engine.begin()``, and its row count
is the answer: ``… WHERE jobs_used < jobs_limit AND …``. Concurrent submissions, from
threads of one process or from several processes on one PostgreSQL, queue on the row lock
and each sees the others' increments, so no number of them can overspend.

A reservation is a job with a task id of the gateway's own (`new_task_id`): the participant
knows the job by it from the first answer on, before the upstream has an id for it (it may
wait in the queue, see ``queue``). Once the upstream takes the job its id is kept beside,
in ``upstream_task_id``: the poller and the upstream's webhook speak of that one. Jobs of an
earlier version have the two alike.

Settling a job that was being sent (``sending``):

- ``accepted``: the upstream returned a task_id; the job is followed until it ends, by the
  gateway process that sent it (its ``follower``, see ``followers``).
- ``refused``: the upstream said no; the reservation is given back.
- ``unknown``: the request went out but no answer came back. Jobs and credits stay
  reserved (it may be running and paid for), the job is listed by ``gateway report``,
  and it is never resubmitted. Only its concurrency slot is freed.
- back to ``queued``, when the upstream certainly did not take it (see ``queue``).

The statements every submission and every poll run are built once, at import: building one
costs several times what running it does. Task updates come in batches (one transaction
for all the changes a poll brought), so a busy room costs one commit per poll, not per task.
What they carry from the upstream passes `upstream_text` first; should the database still
refuse a batch, each task is written alone, so one task's update never holds back another's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import InterfaceError, OperationalError

from ...errors import plural
from ...models import TERMINAL_STATUSES, QuotaLimit, Task
from .database import JobState, jobs, participants
from .limit_row import raise_window
from .raw_statements import Params, RawStatements, compiled
from .upstream_text import MESSAGE_LIMIT, plain_text, storable_task

__all__ = [
    "IN_FLIGHT",
    "JOB_COLUMNS",
    "UNFINISHED",
    "JobRow",
    "Ledger",
    "QuotaRefused",
    "Recorded",
    "Reservation",
    "Wanted",
    "give_back",
    "new_task_id",
    "raw_job_reader",
]

UNSTORED_MESSAGE = "the upstream's message for this task could not be stored"
CANCELLED_MESSAGE = "cancelled while it waited in the queue: nothing was sent, its quota is free"

_p, _j = participants.c, jobs.c
JOB_COLUMNS: tuple[ColumnElement[Any], ...] = (
    _j.participant_id,
    _j.task_id,
    _j.state,
    _j.status,
    _j.percentage,
    _j.message,
    _j.upstream_video_url,
    _j.video_key,
    _j.video_path,
    _j.upstream_task_id,
)
# a participant's jobs not ended yet: waiting, being sent, or running upstream
IN_FLIGHT = (JobState.QUEUED, JobState.SENDING, JobState.SUBMITTED)
# jobs someone must follow: running ones, and finished ones whose clip is not stored yet
UNFINISHED = or_(
    _j.state == JobState.SUBMITTED,
    and_(_j.state == JobState.FINISHED, _j.video_path.is_(None)),
)
_RESERVE = (
    update(participants)
    .where(
        _p.id == bindparam("b_participant"),
        _p.revoked.is_(False),
        or_(_p.jobs_limit.is_(None), _p.jobs_used < _p.jobs_limit),
        or_(
            _p.credits_limit.is_(None), _p.credits_used + bindparam("b_credits") <= _p.credits_limit
        ),
        or_(_p.concurrent_limit.is_(None), _p.running < _p.concurrent_limit),
    )
    .values(
        jobs_used=_p.jobs_used + 1,
        credits_used=_p.credits_used + bindparam("b_credits"),
        running=_p.running + 1,
    )
    .returning(_p.running)
)
_NEW_JOBS = insert(jobs).returning(_j.id, sort_by_parameter_order=True)  # ids in row order
_ACCEPTED = (
    update(jobs)
    .where(_j.id == bindparam("b_job"), _j.state == bindparam("b_before"))
    .values(
        upstream_task_id=bindparam("b_task"),
        state=JobState.SUBMITTED,
        status="staged",
        message=None,
        follower=bindparam("b_follower"),
        updated_at=bindparam("b_at"),
    )
    .returning(_j.participant_id)
)
_PROGRESS = (
    update(jobs)
    .where(_j.upstream_task_id == bindparam("b_task"), _j.state == JobState.SUBMITTED)
    .values(
        status=bindparam("b_status"),
        percentage=bindparam("b_percentage"),
        message=bindparam("b_message"),
        upstream_video_url=bindparam("b_video_url"),
        updated_at=bindparam("b_at"),
    )
)
_FREE_SLOT = (
    update(participants).where(_p.id == bindparam("b_participant")).values(running=_p.running - 1)
)
_TAKE_SLOT = (
    update(participants).where(_p.id == bindparam("b_participant")).values(running=_p.running + 1)
)
_JOB_BY_TASK = select(*JOB_COLUMNS).where(_j.task_id == bindparam("b_task"))
_JOBS_BY_TASK = select(*JOB_COLUMNS).where(_j.task_id.in_(bindparam("b_tasks", expanding=True)))
_JOBS_BY_UPSTREAM = select(*JOB_COLUMNS).where(
    _j.upstream_task_id.in_(bindparam("b_tasks", expanding=True))
)
_QUEUED_OF = select(func.count()).where(
    _j.participant_id == bindparam("b_participant"),
    _j.state.in_([JobState.QUEUED, JobState.SENDING]),
)


def new_task_id() -> str:
    """The id a participant knows a job by, given by the gateway (random, never reused)."""
    return f"gw-{secrets.token_hex(12)}"


def raw_job_reader(reads: RawStatements) -> Callable[[str], JobRow | None]:
    """`Ledger.job` on PostgreSQL, from any thread, without SQLAlchemy's cost (`raw_statements`)."""
    first = reads.prepare(_JOB_BY_TASK)

    def job(task_id: str) -> JobRow | None:
        row = first(b_task=task_id)
        return JobRow(*row) if row is not None else None

    return job


class QuotaRefused(Exception):
    """The participant's quota has no room; ``limit`` says which part, the message how."""

    def __init__(self, limit: QuotaLimit, message: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass
class Recorded:
    """What `Ledger.update_tasks` could not write as it came."""

    # the database could not be reached: write these again later (``cause`` says why)
    retry: list[Task] = field(default_factory=list)
    cause: BaseException | None = None
    # task_id: why the database refused its update (its plain form was written, if it could)
    refused: dict[str, BaseException] = field(default_factory=dict)


@dataclass(frozen=True)
class Wanted:
    """A reservation asked for: whose, its credits, the request (its public payload), and
    the process sending it at once (None: it waits in the queue)."""

    participant_id: int
    credits: int
    request: dict[str, Any]
    sender: str | None = None


@dataclass(frozen=True)
class Reservation:
    """A job reserved in the ledger: its row, the id its owner knows it by, its turn."""

    job_id: int
    task_id: str
    turn: int


@dataclass(frozen=True)
class JobRow:
    """One job as the ledger knows it (the state a participant's fetch is answered from)."""

    participant_id: int
    task_id: str
    state: str
    status: str | None
    percentage: int | None
    message: str | None
    upstream_video_url: str | None
    video_key: str | None
    video_path: str | None
    upstream_task_id: str | None = None


class Ledger:
    """Quota reservations and job states in the gateway's database; ``clock`` stamps them
    (a wall clock: several processes compare its stamps)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._reserve = compiled(_RESERVE, engine.dialect)

    def reserve(
        self,
        participant_id: int,
        credits: int,
        request: dict[str, Any],
        *,
        sender: str | None = None,
    ) -> Reservation:
        """Reserve one job and ``credits``, queued (or, given the ``sender`` process, being
        sent by it at once); raises `QuotaRefused` (counted against the limit that refused
        it, for the report).

        The job's turn is how many of its owner's jobs were waiting or running before it
        (the queue's round-robin, see ``queue``).
        """
        [reserved] = self.reserve_many([Wanted(participant_id, credits, request, sender)])
        if isinstance(reserved, QuotaRefused):
            raise reserved
        return reserved

    def reserve_many(self, wanted: Sequence[Wanted]) -> list[Reservation | QuotaRefused]:
        """Reservations in one transaction (one commit), in order: each quota check sees
        those before it, exactly as separate transactions would."""
        now = self.clock()
        with self.engine.begin() as conn:
            return _reserve_all(conn, wanted, now, self._reserve)

    def accepted(self, job_id: int, upstream_task_id: str, follower: str) -> bool:
        """The upstream took the job as ``upstream_task_id``; ``follower`` (this gateway
        process) follows it. A job a peer took for lost meanwhile (this process missed its
        beats) is taken back. False when the job was not being sent."""
        values = {
            "b_job": job_id,
            "b_task": upstream_task_id,
            "b_follower": follower,
            "b_at": self.clock(),
        }
        with self.engine.begin() as conn:
            moved = conn.execute(_ACCEPTED, {**values, "b_before": JobState.SENDING}).first()
            if moved is not None:
                return True
            lost = conn.execute(_ACCEPTED, {**values, "b_before": JobState.UNKNOWN}).first()
            if lost is not None:
                conn.execute(_TAKE_SLOT, {"b_participant": lost.participant_id})
            return lost is not None

    def refused(self, job_id: int, message: str) -> bool:
        """The upstream said no to the job: give the whole reservation back."""
        with self.engine.begin() as conn:
            return _refund(
                conn, _j.id == job_id, JobState.SENDING, JobState.REFUSED, message, self.clock()
            )

    def cancel(self, participant_id: int, task_id: str) -> JobRow | None:
        """Withdraw the participant's job while it waits in the queue, and give its quota
        back. Returns the job as it is now (``cancelled``, or whatever it was if it had
        left the queue already); None when it is not theirs or not known."""
        owned = and_(_j.task_id == task_id, _j.participant_id == participant_id)
        with self.engine.begin() as conn:
            _refund(
                conn, owned, JobState.QUEUED, JobState.CANCELLED, CANCELLED_MESSAGE, self.clock()
            )
            row = conn.execute(select(*JOB_COLUMNS).where(owned)).first()
        return JobRow(*row) if row is not None else None

    def unknown(self, job_id: int, message: str = "no answer from the upstream") -> bool:
        """No answer to the submit (or none the gateway can follow): keep jobs and credits
        reserved, free the running slot."""
        return self._end(job_id, JobState.SENDING, JobState.UNKNOWN, message=_shown(message))

    def orphans_to_unknown(self, older_than: float) -> int:
        """Reservations an earlier version left when it died mid-submit: their outcome is
        unknown.

        Only those older than ``older_than`` seconds, so a submit still in flight in another
        process sharing the database is left alone. Returns how many were moved.
        """
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.state == JobState.RESERVED,
                        jobs.c.created_at < self.clock() - older_than,
                    )
                )
                .scalars()
                .all()
            )
        message = "the gateway stopped before the upstream answered"
        return sum(
            self._end(job_id, JobState.RESERVED, JobState.UNKNOWN, message=message)
            for job_id in ids
        )

    def update_tasks(self, tasks: Sequence[Task]) -> Recorded:
        """Record the latest state of each task and end those that ended, in one transaction.

        Should the database refuse it, each task is written in a transaction of its own; a
        task whose update is refused even alone gets a plain form of it (its status, without
        the upstream's message or URL). See `Recorded` for what could not be written.
        """
        clean = [task for task in map(storable_task, tasks) if task is not None]
        try:
            self._write(clean)
            return Recorded()
        except Exception as exc:
            if _unreachable(exc):
                return Recorded(retry=list(clean), cause=exc)
        recorded = Recorded()
        for task in clean:
            self._write_alone(task, recorded)
        return recorded

    def _write_alone(self, task: Task, recorded: Recorded) -> None:
        try:
            self._write([task])
            return
        except Exception as exc:
            if _unreachable(exc):
                recorded.retry.append(task)
                recorded.cause = exc
                return
            recorded.refused[task.task_id] = exc
        try:
            self._write([dataclasses.replace(task, message=UNSTORED_MESSAGE, video_url=None)])
        except Exception as exc:
            if _unreachable(exc):
                recorded.retry.append(task)
                recorded.cause = exc

    def _write(self, tasks: Sequence[Task]) -> None:
        now = self.clock()
        running = [
            {
                "b_task": task.task_id,
                "b_status": task.status,
                "b_percentage": task.percentage,
                "b_message": task.message,
                "b_video_url": task.video_url,
                "b_at": now,
            }
            for task in tasks
            if task.status not in TERMINAL_STATUSES
        ]
        with self.engine.begin() as conn:
            if running:
                conn.execute(_PROGRESS, running)
            ended = sum(
                self._end_task(conn, task, now)
                for task in tasks
                if task.status in TERMINAL_STATUSES
            )
            raise_window(conn, ended)

    def _end_task(self, conn: Connection, task: Task, now: float) -> bool:
        values: dict[str, Any] = {
            "status": task.status,
            "percentage": task.percentage,
            "message": task.message,
            "upstream_video_url": task.video_url,
            "updated_at": now,
        }
        state = JobState(task.status)
        if state is JobState.FINISHED:
            values["video_key"] = secrets.token_urlsafe(18)
        return _end_in(conn, _j.upstream_task_id == task.task_id, JobState.SUBMITTED, state, values)

    def video_stored(self, task_id: str, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.task_id == task_id)
                .values(video_path=path, updated_at=self.clock())
            )

    def job(self, task_id: str) -> JobRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(_JOB_BY_TASK, {"b_task": task_id}).first()
        return JobRow(*row) if row is not None else None

    def jobs(self, task_ids: Iterable[str]) -> list[JobRow]:
        """The jobs of these tasks (those the ledger knows), in one read."""
        with self.engine.connect() as conn:
            rows = conn.execute(_JOBS_BY_TASK, {"b_tasks": list(task_ids)}).all()
        return [JobRow(*row) for row in rows]

    def jobs_by_upstream(self, upstream_task_ids: Iterable[str]) -> list[JobRow]:
        """The jobs the upstream knows by these ids, in one read."""
        with self.engine.connect() as conn:
            rows = conn.execute(_JOBS_BY_UPSTREAM, {"b_tasks": list(upstream_task_ids)}).all()
        return [JobRow(*row) for row in rows]

    def by_video_key(self, key: str) -> JobRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*JOB_COLUMNS).where(jobs.c.video_key == key)).first()
        return JobRow(*row) if row is not None else None

    def account(self, participant_id: int) -> dict[str, Any] | None:
        """The participant's row, with ``queued``: their jobs not sent upstream yet."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(participants).where(participants.c.id == participant_id)
            ).first()
            if row is None:
                return None
            queued = conn.execute(_QUEUED_OF, {"b_participant": participant_id}).scalar_one()
        return {**row._mapping, "queued": int(queued)}

    def _end(self, job_id: int, before: JobState, after: JobState, **values: Any) -> bool:
        values.setdefault("updated_at", self.clock())
        with self.engine.begin() as conn:
            return _end_in(conn, _j.id == job_id, before, after, values)


def _reserve_all(
    conn: Connection, wanted: Sequence[Wanted], now: float, reserve: tuple[str, Params]
) -> list[Reservation | QuotaRefused]:
    """Each quota check in order (each sees those before it), then every granted job's row
    in one multi-row insert.

    The first check goes through SQLAlchemy, which takes this process's turn to write
    (``write_gate``); the others run the same compiled statement on the transaction's own
    DBAPI cursor, at a sixth of the cost: a room's hundred reservations are one batch."""
    sql, params = reserve
    outcomes: list[Reservation | QuotaRefused | None] = []
    granted: list[tuple[int, dict[str, Any]]] = []
    with contextlib.closing(conn.connection.driver_connection.cursor()) as cursor:  # type: ignore[union-attr]
        for one in wanted:
            values = {"b_participant": one.participant_id, "b_credits": one.credits}
            if outcomes:
                cursor.execute(sql, params(**values))
                taken = cursor.fetchone()
            else:
                taken = conn.execute(_RESERVE, values).first()
            if taken is None:
                outcomes.append(_refusal(conn, one))
                continue
            turn = max(0, int(taken[0]) - 1)
            granted.append((len(outcomes), _new_job_row(one, turn, now)))
            outcomes.append(None)
    if granted:
        rows = [row for _index, row in granted]
        ids = conn.execute(_NEW_JOBS, rows).scalars().all()
        for (index, row), job_id in zip(granted, ids, strict=True):
            outcomes[index] = Reservation(int(job_id), row["task_id"], row["turn"])
    return [outcome for outcome in outcomes if outcome is not None]


def _new_job_row(wanted: Wanted, turn: int, now: float) -> dict[str, Any]:
    return {
        "participant_id": wanted.participant_id,
        "task_id": new_task_id(),
        "state": JobState.QUEUED if wanted.sender is None else JobState.SENDING,
        "credits": wanted.credits,
        "request": json.dumps(wanted.request, ensure_ascii=False),
        "status": "staged",
        "percentage": 0,
        "turn": turn,
        "follower": wanted.sender,
        "sent_at": None if wanted.sender is None else now,
        "created_at": now,
        "updated_at": now,
    }


def _refusal(conn: Connection, wanted: Wanted) -> QuotaRefused:
    """Why the quota had no room, counted against the limit that refused it (the report)."""
    row = conn.execute(select(participants).where(_p.id == wanted.participant_id)).first()
    refusal = QuotaRefused(*_what_ran_out(row, wanted.credits))
    if row is not None and not row.revoked:
        counter = participants.c[f"over_{refusal.limit.value}"]
        conn.execute(
            update(participants)
            .where(_p.id == wanted.participant_id)
            .values({counter: func.coalesce(counter, 0) + 1})
        )
    return refusal


def give_back(conn: Connection, participant_id: int, credits: int) -> None:
    """A reservation that cost nothing upstream: its job, credits and slot are free again."""
    conn.execute(
        update(participants)
        .where(_p.id == participant_id)
        .values(
            jobs_used=_p.jobs_used - 1,
            credits_used=_p.credits_used - credits,
            running=_p.running - 1,
        )
    )


def _refund(
    conn: Connection,
    where: ColumnElement[bool],
    before: JobState,
    after: JobState,
    message: str,
    now: float,
) -> bool:
    """Move one job from ``before`` to ``after`` and give its reservation back, exactly once."""
    moved = conn.execute(
        update(jobs)
        .where(where, _j.state == before)
        .values(state=after, message=_shown(message), updated_at=now)
        .returning(_j.participant_id, _j.credits)
    ).first()
    if moved is None:
        return False
    give_back(conn, moved.participant_id, moved.credits)
    return True


def _shown(message: str) -> str | None:
    """A message a participant may read (from the upstream, perhaps): one line, capped."""
    return plain_text(message, MESSAGE_LIMIT)


def _end_in(
    conn: Connection,
    where: ColumnElement[bool],
    before: JobState,
    after: JobState,
    values: dict[str, Any],
) -> bool:
    """Move one job from ``before`` to ``after`` and free its running slot, exactly once."""
    moved = conn.execute(
        update(jobs).where(where, _j.state == before).values(state=after, **values)
    )
    if moved.rowcount != 1:
        return False
    owner = conn.execute(select(_j.participant_id).where(where)).scalar_one()
    conn.execute(_FREE_SLOT, {"b_participant": owner})
    return True


def _unreachable(exc: BaseException) -> bool:
    """True when the database itself failed (gone, restarting, locked), not this data."""
    return isinstance(exc, (OperationalError, InterfaceError)) or bool(
        getattr(exc, "connection_invalidated", False)
    )


def _what_ran_out(row: Any, credits: int) -> tuple[QuotaLimit, str]:
    """The exhausted part of the quota, and how the participant should read it."""
    if row is None or row.revoked:
        return QuotaLimit.JOBS, "quota reached: this token has no quota"
    if row.jobs_limit is not None and row.jobs_used >= row.jobs_limit:
        used = "the 1 job" if row.jobs_limit == 1 else f"all {row.jobs_limit} jobs"
        verb = "is" if row.jobs_limit == 1 else "are"
        return QuotaLimit.JOBS, f"quota reached: {used} of your quota {verb} used"
    if row.credits_limit is not None and row.credits_used + credits > row.credits_limit:
        left = max(0, row.credits_limit - row.credits_used)
        return QuotaLimit.CREDITS, (
            f"quota reached: {plural(left, 'credit')} left, this job needs {credits}"
        )
    if row.concurrent_limit is not None and row.running >= row.concurrent_limit:
        one = row.concurrent_limit == 1
        return QuotaLimit.CONCURRENT, (
            f"quota reached: {plural(row.concurrent_limit, 'job')} {'is' if one else 'are'} "
            f"already running, the most you may run at once; wait until "
            f"{'it' if one else 'one'} finishes"
        )
    return QuotaLimit.CONCURRENT, "quota reached: try again in a moment"
