"""The room's finished clips for ``/gallery``: newest first, and only what is new since a cursor.

A clip is listed once its video is in the gateway's store (so the gallery never shows a
card that cannot play). The cursor is the store time of the newest clip a page has seen;
the next poll asks for clips stored after it, minus an `OVERLAP` that catches a clip whose
store time was taken before another's but whose write committed after it (pages drop the
repeats by id). A clip an admin hides leaves the feed, and pages showing it are told to take
it off (``removed``). Everything returned is plain data: the page renders it as text.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Engine, Select, select, update

from ..db.database import JobState, jobs, participants

__all__ = ["OVERLAP", "PAGE_SIZE", "ClipFeed", "parse_cursor"]

PAGE_SIZE = 60
_j = jobs.c
OVERLAP = 5.0
SETTINGS = (
    ("generation_type", "type"),
    ("model", "model"),
    ("duration", "seconds"),
    ("aspect_ratio", "ratio"),
    ("flip", "flip"),
)


def parse_cursor(value: str | None) -> float | None:
    """A cursor from a page (a store time), or None for an absent or unusable one."""
    if not value or len(value) > 32:
        return None
    try:
        cursor = float(value)
    except ValueError:
        return None
    return cursor if cursor == cursor and cursor >= 0 else None  # not NaN


class ClipFeed:
    """Reads finished, stored clips from the ledger's tables; hides and shows them again."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def clips(
        self, *, owner: int | None, since: float | None, limit: int = PAGE_SIZE
    ) -> dict[str, Any]:
        """``{"clips": [...], "removed": [...], "cursor": str}``: one participant's
        (``owner``) or everyone's clips; ``removed`` names the clips an admin hid since the
        cursor, for the pages showing them to take them off."""
        query = _stored().order_by(_j.updated_at.desc(), _j.id.desc()).limit(limit)
        if owner is not None:
            query = query.where(_j.participant_id == owner)
        if since is None:
            query = query.where(_j.hidden_at.is_(None))
        else:
            query = query.where(_j.updated_at > since - OVERLAP)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        newest = max([row.updated_at for row in rows] + [since or 0.0])
        return {
            "clips": [_clip(row) for row in rows if row.hidden_at is None],
            "removed": [f"job-{row.id}" for row in rows if row.hidden_at is not None],
            "cursor": repr(newest),
        }

    def listing(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Every stored clip, newest first, hidden ones too (``hidden``), with the task id
        and the file it is kept in: for ``/admin``, ``gateway clip list`` and the export."""
        query = _stored().order_by(_j.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            _clip(row)
            | {
                "job": row.id,
                "task_id": row.task_id,
                "hidden": row.hidden_at is not None,
                "video_path": row.video_path,
            }
            for row in rows
        ]

    def set_hidden(self, job_id: int, hidden: bool) -> bool:
        """Hide a clip from every gallery (moderation), or show it again; False if there is
        no such finished clip. Pages already showing it take it off at their next poll."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(_j.id == job_id, _j.state == JobState.FINISHED)
                .values(hidden_at=now if hidden else None, updated_at=now)
            )
        return done.rowcount == 1


def _stored() -> Select[Any]:
    """Finished clips whose video is in the gateway's store, with their owner's name."""
    p = participants.c
    return (
        select(
            _j.id,
            _j.task_id,
            _j.request,
            _j.video_key,
            _j.video_path,
            _j.updated_at,
            _j.hidden_at,
            p.name,
        )
        .join(participants, p.id == _j.participant_id)
        .where(
            _j.state == JobState.FINISHED,
            _j.video_key.is_not(None),
            _j.video_path.is_not(None),
            _j.video_path != "",
        )
    )


def _clip(row: Any) -> dict[str, Any]:
    try:
        request = json.loads(row.request)
    except ValueError:
        request = {}
    if not isinstance(request, dict):
        request = {}
    settings = [
        [label, _setting(request[key])]
        for key, label in SETTINGS
        if request.get(key) not in (None, "")
    ]
    return {
        "id": f"job-{row.id}",
        "participant": row.name,
        "prompt": str(request.get("prompt") or ""),
        "settings": settings,
        "video_url": f"videos/{row.video_key}.mp4",
        "finished_at": row.updated_at,
    }


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)[:40]
