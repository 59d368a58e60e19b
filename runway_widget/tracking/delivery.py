"""The one path every update of a tracked task takes to its callbacks, polled or pushed.

Here an update is dropped when it shows nothing new or goes backwards (a stale poll, a
late push), recorded in the job history when its status, video or message changed, and
handed to the callbacks; between polls, running progress bars move along each task's
fitted rate. Callbacks run on the caller's thread, one delivery at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..models import Task
from .board import Entry, Subscription, TaskBoard, TaskSource
from .schedule import STATUS_ORDER

__all__ = ["PROGRESS_PERIOD", "Delivery"]

logger = logging.getLogger("runway_widget.tracking")

PROGRESS_PERIOD = 0.5  # seconds between interpolated progress callbacks


class Delivery:
    """Hands a tracker's updates to its callbacks and remembers the latest of each task."""

    def __init__(self, board: TaskBoard, client: TaskSource) -> None:
        self._board = board
        self._client = client
        self._seen: dict[str, Task] = {}
        self._next_progress = 0.0

    @property
    def next_progress(self) -> float:
        """When `animate` next moves the bars (the poller sleeps no longer than that)."""
        return self._next_progress

    def latest(self, task_id: str) -> Task | None:
        """The latest state delivered for ``task_id``, or None."""
        with self._board.locked():
            return self._seen.get(task_id)

    def deliver(
        self,
        task: Task,
        now: float,
        *,
        poll: Entry | None = None,
        stop: threading.Event | None = None,
        journal: bool = True,
    ) -> None:
        """The one path for every update, polled or pushed: dedup, never backwards."""
        board = self._board
        with board.delivering():
            if stop is not None and stop.is_set():
                return
            with board.locked():
                entry = board.get(task.task_id)
                if entry is None or not entry.active:
                    return
                previous = entry.latest
                task = _carry_percentage(task, previous)
                stale = previous is not None and _is_backwards(task, previous)
                if poll is not None:
                    entry.plan.polled(now, task, on_time=poll.on_time, stale=stale)
                elif not stale:
                    entry.plan.pushed_update(now, task)
                if stale or task.same_progress(previous):
                    return
                entry.latest = task
                self._seen[task.task_id] = task
                subs = list(entry.subs)
            if journal and (
                previous is None
                or (task.status, task.video_url, task.message)
                != (previous.status, previous.video_url, previous.message)
            ):
                self._journal(task)
            for sub in subs:
                if sub.on_update is not None:
                    _call(sub.on_update, task, task.task_id)
            if task.is_finished:
                self._show(entry, subs, 100.0)
            elif not task.is_done and task.percentage is not None:
                self._show(entry, subs, float(task.percentage))
            if task.is_done:
                board.settle(entry, task)

    def subscribe(self, task_id: str, sub: Subscription) -> Entry:
        """Add ``sub`` to the task's entry and give it the state others have already seen."""
        board = self._board
        with board.delivering():
            with board.locked():
                entry = board.entry(task_id)
                entry.subs.append(sub)
                current = entry.latest
            if current is not None:
                if sub.on_update is not None:
                    _call(sub.on_update, current, task_id)
                if sub.on_progress is not None and entry.shown >= 0:
                    _call(sub.on_progress, entry.shown, task_id)
        return entry

    def animate(self, now: float, stop: threading.Event) -> None:
        """Move running bars between polls along each task's fitted rate, never past 99."""
        board = self._board
        if now < self._next_progress:
            return
        self._next_progress = now + PROGRESS_PERIOD
        with board.delivering():
            if stop.is_set():
                return
            with board.locked():
                running = [
                    (e, list(e.subs))
                    for e in board.active()
                    if e.latest is not None and e.animated
                ]
                estimates = [(e, subs, e.plan.estimate(now)) for e, subs in running]
            for entry, subs, estimate in estimates:
                if estimate is not None:
                    self._show(entry, subs, round(min(99.0, estimate), 1))

    def _show(self, entry: Entry, subs: list[Subscription], value: float) -> None:
        if value <= entry.shown:
            return
        entry.shown = value
        for sub in subs:
            if sub.on_progress is not None:
                _call(sub.on_progress, value, entry.task_id)

    def _journal(self, task: Task) -> None:
        try:
            self._client.store.record_task(task, backend=self._client.base_url)
        except Exception:
            logger.exception("could not record task %s in the job history", task.task_id)


def _is_backwards(task: Task, previous: Task) -> bool:
    """True when ``task`` is older than what was delivered (a stale poll, a late push)."""
    if previous.is_done:
        return True
    if task.is_done:
        return False
    rank, previous_rank = STATUS_ORDER.get(task.status), STATUS_ORDER.get(previous.status)
    if rank is not None and previous_rank is not None and rank < previous_rank:
        return True
    return (
        task.percentage is not None
        and previous.percentage is not None
        and task.percentage < previous.percentage
    )


def _carry_percentage(task: Task, previous: Task | None) -> Task:
    """A running update without a percentage keeps the one already shown."""
    if (
        previous is not None
        and task.percentage is None
        and previous.percentage is not None
        and not task.is_done
    ):
        return dataclasses.replace(task, percentage=previous.percentage, raw=task.raw)
    return task


def _call(callback: Callable[[Any], object], value: Any, task_id: str) -> None:
    try:
        callback(value)
    except Exception:
        logger.exception("callback %r for task %s raised; polling goes on", callback, task_id)
