"""The quota ledger: reserve before the upstream submit, settle after it, follow each job.

Every quota check is one conditional ``UPDATE`` inside ``engine.begin()``, and its row count
is the answer: ``… WHERE jobs_used < jobs_limit AND …``. Concurrent submissions, from
threads of one process or from several processes on one PostgreSQL, queue on the row lock
and each sees the others' increments, so no number of them can overspend.

Settling:

- ``accepted``: the upstream returned a task_id; the job is followed until it ends.
- ``refused``: the upstream certainly did not take it; the reservation is given back.
- ``unknown``: the request went out but no answer came back. Jobs and credits stay
  reserved (it may be running and paid for), the job is listed by ``gateway report``,
  and it is never resubmitted. Only its concurrency slot is freed.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, insert, or_, select, update

from .database import jobs, participants

__all__ = ["JobRow", "Ledger", "QuotaRefused"]

TERMINAL = ("finished", "failed")


class QuotaRefused(Exception):
    """The participant's quota has no room; the message names what ran out."""


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


class Ledger:
    """Quota reservations and job states in the gateway's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def reserve(self, participant_id: int, credits: int, request: dict[str, Any]) -> int:
        """Reserve one job and ``credits``; returns the job's id, or raises `QuotaRefused`."""
        p = participants.c
        fits = and_(
            p.id == participant_id,
            p.revoked.is_(False),
            or_(p.jobs_limit.is_(None), p.jobs_used < p.jobs_limit),
            or_(p.credits_limit.is_(None), p.credits_used + credits <= p.credits_limit),
            or_(p.concurrent_limit.is_(None), p.running < p.concurrent_limit),
        )
        now = time.time()
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(participants)
                .where(fits)
                .values(
                    jobs_used=p.jobs_used + 1,
                    credits_used=p.credits_used + credits,
                    running=p.running + 1,
                )
            )
            if taken.rowcount != 1:
                row = conn.execute(select(participants).where(p.id == participant_id)).first()
                raise QuotaRefused(_what_ran_out(row, credits))
            inserted = conn.execute(
                insert(jobs)
                .returning(jobs.c.id)
                .values(
                    participant_id=participant_id,
                    state="reserved",
                    credits=credits,
                    request=json.dumps(request, ensure_ascii=False),
                    created_at=now,
                    updated_at=now,
                )
            )
            return int(inserted.scalar_one())

    def accepted(self, job_id: int, task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(task_id=task_id, state="submitted", status="staged", updated_at=time.time())
            )

    def refused(self, job_id: int) -> None:
        """The upstream did not take the job: give the whole reservation back."""
        with self.engine.begin() as conn:
            job = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == "reserved")
                .values(state="refused", updated_at=time.time())
            )
            if job.rowcount == 1:
                credits = conn.execute(
                    select(jobs.c.credits, jobs.c.participant_id).where(jobs.c.id == job_id)
                ).one()
                p = participants.c
                conn.execute(
                    update(participants)
                    .where(p.id == credits.participant_id)
                    .values(
                        jobs_used=p.jobs_used - 1,
                        credits_used=p.credits_used - credits.credits,
                        running=p.running - 1,
                    )
                )

    def unknown(self, job_id: int) -> None:
        """No answer to the submit: keep jobs and credits reserved, free the running slot."""
        self._end(job_id, "reserved", "unknown", message="no answer from the upstream")

    def orphans_to_unknown(self, older_than: float) -> int:
        """Reservations left by a process that died mid-submit: their outcome is unknown.

        Only those older than ``older_than`` seconds, so a submit still in flight in another
        process sharing the database is left alone. Returns how many were moved.
        """
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.state == "reserved", jobs.c.created_at < time.time() - older_than
                    )
                )
                .scalars()
                .all()
            )
        message = "the gateway stopped before the upstream answered"
        return sum(self._end(job_id, "reserved", "unknown", message=message) for job_id in ids)

    def update_task(
        self,
        task_id: str,
        status: str,
        percentage: int | None,
        message: str | None,
        upstream_video_url: str | None,
    ) -> bool:
        """Record a task's latest state; True when this call ended it (first to see the end)."""
        values: dict[str, Any] = {
            "status": status,
            "percentage": percentage,
            "message": message,
            "upstream_video_url": upstream_video_url,
            "updated_at": time.time(),
        }
        if status not in TERMINAL:
            with self.engine.begin() as conn:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.task_id == task_id, jobs.c.state == "submitted")
                    .values(values)
                )
            return False
        if status == "finished":
            values["video_key"] = secrets.token_urlsafe(18)
        return self._end(None, "submitted", status, task_id=task_id, **values)

    def video_stored(self, task_id: str, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.task_id == task_id)
                .values(video_path=path, updated_at=time.time())
            )

    def job(self, task_id: str) -> JobRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(_job_columns().where(jobs.c.task_id == task_id)).first()
        return JobRow(*row) if row is not None else None

    def following(self) -> list[JobRow]:
        """Jobs to follow after a start: running ones, and finished ones whose clip is missing."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                _job_columns().where(
                    or_(
                        jobs.c.state == "submitted",
                        and_(jobs.c.state == "finished", jobs.c.video_path.is_(None)),
                    )
                )
            ).all()
        return [JobRow(*row) for row in rows]

    def by_video_key(self, key: str) -> JobRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(_job_columns().where(jobs.c.video_key == key)).first()
        return JobRow(*row) if row is not None else None

    def account(self, participant_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(participants).where(participants.c.id == participant_id)
            ).first()
        return dict(row._mapping) if row is not None else None

    def _end(
        self,
        job_id: int | None,
        before: str,
        after: str,
        *,
        task_id: str | None = None,
        **values: Any,
    ) -> bool:
        """Move one job from ``before`` to ``after`` and free its running slot, exactly once."""
        where = jobs.c.id == job_id if job_id is not None else jobs.c.task_id == task_id
        values.setdefault("updated_at", time.time())
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(jobs).where(where, jobs.c.state == before).values(state=after, **values)
            )
            if moved.rowcount != 1:
                return False
            owner = conn.execute(select(jobs.c.participant_id).where(where)).scalar_one()
            p = participants.c
            conn.execute(update(participants).where(p.id == owner).values(running=p.running - 1))
        return True


def _job_columns() -> Any:
    c = jobs.c
    return select(
        c.participant_id,
        c.task_id,
        c.state,
        c.status,
        c.percentage,
        c.message,
        c.upstream_video_url,
        c.video_key,
        c.video_path,
    )


def _what_ran_out(row: Any, credits: int) -> str:
    """Name the exhausted part of the quota, the way the participant should read it."""
    if row is None or row.revoked:
        return "quota reached: this token has no quota"
    if row.jobs_limit is not None and row.jobs_used >= row.jobs_limit:
        return f"quota reached: all {row.jobs_limit} jobs of your quota are used"
    if row.credits_limit is not None and row.credits_used + credits > row.credits_limit:
        left = max(0, row.credits_limit - row.credits_used)
        return f"quota reached: {left} credits left, this job needs {credits}"
    if row.concurrent_limit is not None and row.running >= row.concurrent_limit:
        return (
            f"quota reached: {row.concurrent_limit} concurrent jobs already running; "
            "wait until one finishes"
        )
    return "quota reached: try again in a moment"
