"""The room's report: per participant, quota and use, jobs by state, refusals by limit.

One function for ``gateway report``, ``/admin`` and its downloads, so they always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, func, select

from .database import JobState, jobs

__all__ = ["OVER_QUOTA", "room_report"]

OVER_QUOTA = ("over_jobs", "over_credits", "over_concurrent")


def room_report(engine: Engine, people: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A row per participant of ``people`` (the roster's rows): jobs and credits used and
    allowed, running upstream, queued (waiting for the upstream, or being sent), finished,
    failed, refused upstream (given back), unknown (to check upstream) with their
    submissions, cancelled while they waited, and how often each limit refused a
    submission."""
    with engine.connect() as conn:
        counts = conn.execute(
            select(jobs.c.participant_id, jobs.c.state, func.count()).group_by(
                jobs.c.participant_id, jobs.c.state
            )
        ).all()
        unknown = conn.execute(
            select(jobs.c.participant_id, jobs.c.id, jobs.c.created_at, jobs.c.request).where(
                jobs.c.state == JobState.UNKNOWN
            )
        ).all()
    by_state: dict[int, dict[str, int]] = {}
    for participant_id, state, count in counts:
        by_state.setdefault(participant_id, {})[state] = count
    rows = []
    for person in people:
        states = by_state.get(person["id"], {})
        queued = states.get(JobState.QUEUED, 0) + states.get(JobState.SENDING, 0)
        rows.append(
            {
                "id": person["id"],
                "name": person["name"],
                "revoked": bool(person["revoked"]),
                "admin": bool(person["admin"]),
                "jobs_used": person["jobs_used"],
                "jobs_limit": person["jobs_limit"],
                "credits_used": person["credits_used"],
                "credits_limit": person["credits_limit"],
                "concurrent_limit": person["concurrent_limit"],
                "running": max(0, person["running"] - queued),
                "queued": queued,
                "finished": states.get(JobState.FINISHED, 0),
                "failed": states.get(JobState.FAILED, 0),
                "refused": states.get(JobState.REFUSED, 0),
                "unknown": states.get(JobState.UNKNOWN, 0),
                "cancelled": states.get(JobState.CANCELLED, 0),
                **{key: person.get(key) or 0 for key in OVER_QUOTA},
                "unknown_submissions": [
                    {"job": job_id, "submitted_at": at, "request": request}
                    for owner, job_id, at, request in unknown
                    if owner == person["id"]
                ],
            }
        )
    return rows

