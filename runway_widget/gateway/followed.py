"""What one gateway process knows of its tasks in memory: their rows, and the ones it polls.

Tasks are keyed by the id their owner knows them by (the gateway's); a tracker handle
polls the upstream's id for the same task.

Four threads touch it: the event loop reads rows to answer fetches, the upstream pool adds a
task once submitted, the updates thread records changes, and the database pool hands tasks
over to another process (or adopts a dead one's). Each method is one step under one lock,
so no thread sees a task half added or half handed over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ..tracking.tracker import TrackHandle
from .db.database import JobState
from .db.ledger import JobRow

__all__ = ["FollowedTasks"]


class FollowedTasks:
    """Rows by task id (what fetches are answered from), and the tracker handles of the
    tasks this process polls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, JobRow] = {}
        self._handles: dict[str, TrackHandle] = {}
        self._handed_over: set[str] = set()  # followed by another process: answer from the DB

    def row(self, task_id: str) -> JobRow | None:
        with self._lock:
            return self._rows.get(task_id)

    def unknown(self, task_ids: Iterable[str]) -> list[str]:
        """Of ``task_ids``, those this process has no row of (another process moves them)."""
        with self._lock:
            return [task_id for task_id in task_ids if task_id not in self._rows]

    def polled(self) -> list[str]:
        """The tasks this process polls now."""
        with self._lock:
            return list(self._handles)

    def remember(self, row: JobRow) -> TrackHandle | None:
        """Keep ``row`` as the task's latest state; once it has ended, returns the handle
        that polled it (the caller cancels it, outside this lock)."""
        with self._lock:
            if row.task_id in self._handed_over:
                return None
            self._rows[row.task_id] = row
            if row.state == JobState.SUBMITTED:
                return None
            return self._handles.pop(row.task_id, None)

    def poll(self, task_id: str, handle: TrackHandle) -> bool:
        """Keep the handle polling task ``task_id``; False (the caller cancels it) when the
        task ended or was handed over before the handle came."""
        with self._lock:
            row = self._rows.get(task_id)
            ended = row is not None and row.state != JobState.SUBMITTED
            if ended or task_id in self._handed_over:
                return False
            self._handles[task_id] = handle
            return True

    def adopt(self, row: JobRow) -> None:
        """A task this process follows from now on (at start, or a dead process's)."""
        with self._lock:
            self._handed_over.discard(row.task_id)
            self._rows[row.task_id] = row

    def hand_over(self, task_id: str) -> TrackHandle | None:
        """Another process follows the task now: forget it; returns the handle to cancel."""
        with self._lock:
            self._handed_over.add(task_id)
            self._rows.pop(task_id, None)
            return self._handles.pop(task_id, None)
