"""Task updates on their way from the tracker to the ledger: queued, batched, written in order.

The tracker's callbacks only queue (its locks are never held through a database commit:
the event loop takes them to track new tasks). One thread writes, so a task's updates reach
the ledger in the order they were seen; updates that arrive while a write runs go into the
next one together, one commit for a whole poll, a newer state replacing one not yet written.

A failure is told once: an update the database refuses (see `Ledger.update_tasks`) once
per task, a database that is down once per outage, while its updates are written again
every second until it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .._terminal import inert
from ..errors import shorten
from ..models import Task
from .db.ledger import JobRow, Ledger, Recorded

__all__ = ["RETRY_WRITE_SECONDS", "TaskUpdates"]

logger = logging.getLogger("runway_widget.gateway")

RETRY_WRITE_SECONDS = 1.0  # after a failed ledger write (the database restarting, say)


class TaskUpdates:
    """Writes queued task updates to the ledger; ``recorded(rows)`` gets the rows after."""

    def __init__(self, ledger: Ledger, recorded: Callable[[list[JobRow]], None]) -> None:
        self._ledger = ledger
        self._recorded = recorded
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-updates")
        self._pending: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._database_failing = False
        self._refusals_told: set[str] = set()

    def queue(self, task: Task, *, replace: bool = True) -> None:
        """Write ``task``'s state soon (``replace=False``: unless a newer one is queued)."""
        with self._lock:
            first = not self._pending
            if replace or task.task_id not in self._pending:
                self._pending[task.task_id] = task
        if first:
            self._thread.submit(self._write_pending)

    def close(self) -> None:
        """Wait until every update seen is in the ledger (or the database failed)."""
        self._thread.shutdown(wait=True)

    def _write_pending(self) -> None:
        with self._lock:
            tasks, self._pending = list(self._pending.values()), {}
        try:
            recorded = self._ledger.update_tasks(tasks)
            rows = self._ledger.jobs_by_upstream(task.task_id for task in tasks)
        except Exception as exc:  # the read after the write failed: write them again
            recorded, rows = Recorded(retry=list(tasks), cause=exc), []
        self._tell_refusals(recorded)
        if recorded.retry:
            self._retry_later(recorded)
        elif self._database_failing:
            self._database_failing = False
            logger.warning("task updates are recorded again")
        self._recorded(rows)

    def _tell_refusals(self, recorded: Recorded) -> None:
        for task_id, exc in recorded.refused.items():
            if task_id not in self._refusals_told:
                self._refusals_told.add(task_id)
                reason = shorten(inert(getattr(exc, "orig", None) or exc), 300)
                logger.error(
                    "the database refused the update of task %s (%s: %s); the others were "
                    "recorded, and its status without the upstream's message and URL",
                    task_id,
                    type(exc).__name__,
                    reason,
                )

    def _retry_later(self, recorded: Recorded) -> None:
        if not self._database_failing:
            self._database_failing = True
            logger.error(
                "could not record %d task update(s): the database failed; retrying every %gs",
                len(recorded.retry),
                RETRY_WRITE_SECONDS,
                exc_info=recorded.cause,
            )
        time.sleep(RETRY_WRITE_SECONDS)  # this thread only writes updates
        for task in recorded.retry:
            self.queue(task, replace=False)
