"""Participants' webhooks for tasks another gateway process moves on.

A participant's webhook target, with its secret, lives only in the memory of the process
that took the submission (see ``participant_webhooks``): a secret is never written to the
database. With replicas on one PostgreSQL another process may send the job and follow it
(or cancel it while it waits, or adopt it), and its changes reach the ledger, never this
process's tracker. So every `WATCH_SECONDS` this process reads, in one
query off the event loop, the ledger rows of the targets it holds for tasks it knows nothing
of itself, and hands them to the webhooks, which push what changed since the last push (the
tasks it follows push from its own tracker, as ever). Holding no such target, it reads
nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor

from .db.ledger import JobRow
from .participant_webhooks import ParticipantWebhooks

__all__ = ["WATCH_SECONDS", "PeerChanges"]

logger = logging.getLogger("runway_widget.gateway")

WATCH_SECONDS = 0.25  # a change another process made is pushed within about this long

Elsewhere = Callable[[Iterable[str]], list[str]]
ReadJobs = Callable[[list[str]], list[JobRow]]


class PeerChanges:
    """Pushes the changes of held webhook targets' tasks that ``elsewhere`` says this process
    does not follow, read with ``read`` (one query) on ``executor``."""

    def __init__(
        self,
        webhooks: ParticipantWebhooks,
        elsewhere: Elsewhere,
        read: ReadJobs,
        executor: Executor,
    ) -> None:
        self._webhooks = webhooks
        self._elsewhere = elsewhere
        self._read = read
        self._executor = executor
        self._looking = threading.Lock()  # one look at a time: a slow database skips ticks
        self._failing = False

    def watch(self) -> None:
        """Look off the event loop (its periodic tick), unless nothing is to be read or the
        last look is still running."""
        task_ids = self._foreign()
        if not task_ids or not self._looking.acquire(blocking=False):
            return
        try:
            self._executor.submit(self._look_in_turn, task_ids)
        except RuntimeError:  # the pool stopped: the gateway is stopping
            self._looking.release()

    def look(self) -> int:
        """Read and push now, on this thread; returns how many rows were read (0: no query)."""
        return self._push(self._foreign())

    def _foreign(self) -> list[str]:
        return self._elsewhere(self._webhooks.task_ids())

    def _look_in_turn(self, task_ids: list[str]) -> None:
        try:
            self._push(task_ids)
            if self._failing:
                logger.info("the tasks other processes follow are read again")
            self._failing = False
        except Exception as exc:  # told once per outage; the next tick tries again
            if not self._failing:
                logger.warning("could not read the tasks other processes follow: %s", exc)
            self._failing = True
        finally:
            self._looking.release()

    def _push(self, task_ids: list[str]) -> int:
        if not task_ids:
            return 0
        rows = self._read(task_ids)
        # a task adopted meanwhile pushes from this process's tracker: never an older state here
        still = set(self._elsewhere(row.task_id for row in rows))
        for row in rows:
            if row.task_id in still:
                self._webhooks.deliver(row)
        return len(rows)
