"""The room's finished clips for ``/gallery``: newest first, and only what is new since a cursor.

A clip is listed once its video is in the gateway's store (so the gallery never shows a
card that cannot play). The cursor is the store time of the newest clip a page has seen;
the next poll asks for clips stored after it, minus an `OVERLAP` that catches a clip whose
store time was taken before another's but whose write committed after it (pages drop the
repeats by id). Everything returned is plain data: the page renders it as text.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select

from ..db.database import JobState, jobs, participants

__all__ = ["OVERLAP", "PAGE_SIZE", "ClipFeed", "parse_cursor"]

PAGE_SIZE = 60
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
    """Reads finished, stored clips from the ledger's tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def clips(
        self, *, owner: int | None, since: float | None, limit: int = PAGE_SIZE
    ) -> dict[str, Any]:
        """``{"clips": [...], "cursor": str}``: one participant's (``owner``) or everyone's."""
        j, p = jobs.c, participants.c
        query = (
            select(j.id, j.request, j.video_key, j.updated_at, p.name)
            .join(participants, p.id == j.participant_id)
            .where(
                j.state == JobState.FINISHED,
                j.video_key.is_not(None),
                j.video_path.is_not(None),
                j.video_path != "",
            )
            .order_by(j.updated_at.desc(), j.id.desc())
            .limit(limit)
        )
        if owner is not None:
            query = query.where(j.participant_id == owner)
        if since is not None:
            query = query.where(j.updated_at > since - OVERLAP)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        newest = max([row.updated_at for row in rows] + [since or 0.0])
        return {"clips": [_clip(row) for row in rows], "cursor": repr(newest)}


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
