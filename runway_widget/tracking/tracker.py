"""One background poller that keeps many tasks current with few requests.

A notebook cell may block for minutes (``time.sleep``, a long computation), and while it
does, an asyncio task on the kernel's loop barely runs: only a thread keeps progress bars
moving. So the tracker owns one named daemon thread that sleeps on a `threading.Event`
(``stop()`` wakes it at once), fetches every due task in one ``fetch-many`` request per
20 tasks, and times its polls from each task's progress rate (see ``schedule``).
Every read first takes a token from the client's request budget, so no number of tasks
can exceed it. Errors slow polling down; they never drop a task.

Updates reach callbacks once per visible change and never go backwards, whether they came
by poll or by webhook push. Callbacks run on the poller thread (or a webhook thread): they
should only set widget values, never create or display widgets. Nothing here prints.

``wait()`` only blocks on an event, so it also works from inside running async code (it
blocks that loop, like any synchronous call) and never needs to drive a coroutine.

`TaskTracker` is the public face, composed of parts that share one
`runway_widget.tracking.board.TaskBoard`: the path every update takes to the callbacks
(`runway_widget.tracking.delivery`) and the polling thread (`runway_widget.tracking.polling`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from ..errors import TaskFailedError, TaskTimeoutError
from ..models import Task
from .board import (
    Entry,
    ProgressCallback,
    Subscription,
    TaskBoard,
    TaskSource,
    UpdateCallback,
)
from .delivery import Delivery
from .polling import THREAD_NAME as THREAD_NAME
from .polling import Poller, Wait
from .schedule import Timing

__all__ = ["TaskSource", "TaskTracker", "TrackHandle", "UpdateFeed"]

EARLY_PUSHES = 256  # pushes kept for tasks not tracked yet (a webhook may beat track())


class UpdateFeed(Protocol):
    """Pushed updates (a `WebhookReceiver`, a gateway's upstream)."""

    def subscribe(self, callback: Callable[[Task], object]) -> Callable[[], None]: ...


class TrackHandle:
    """One subscription to one task, as returned by `TaskTracker.track`."""

    def __init__(self, tracker: TaskTracker, task_id: str, subscription: Subscription) -> None:
        self._tracker = tracker
        self._subscription = subscription
        self.task_id = task_id

    def __repr__(self) -> str:
        task = self.task
        state = f"{task.status} {task.percentage}%" if task else "waiting for first status"
        return f"<TrackHandle {self.task_id}: {state}>"

    @property
    def task(self) -> Task | None:
        """The latest state delivered, or None before the first one."""
        return self._tracker.latest(self.task_id)

    @property
    def done(self) -> bool:
        task = self.task
        return task is not None and task.is_done

    def wait(self, timeout: float | None = None) -> Task:
        """Block until the task finished; see `TaskTracker.wait`."""
        return self._tracker.wait(self.task_id, timeout)

    def cancel(self) -> None:
        """Stop this handle's callbacks; the task stops being polled if nobody else follows it."""
        self._tracker._cancel(self.task_id, self._subscription)


class TaskTracker:
    """Polls many tasks from one background thread and calls back on every change.

    ``min_interval`` and ``max_interval`` bound the time between two scheduled polls of
    one task; ``webhooks`` (a `WebhookReceiver`) adds pushed updates. ``clock`` and
    ``wait`` (how the poller sleeps on its event) are the time the tracker runs on.
    """

    def __init__(
        self,
        client: TaskSource,
        *,
        webhooks: UpdateFeed | None = None,
        min_interval: float = 0.5,
        max_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wait: Wait = threading.Event.wait,
    ) -> None:
        if not 0 < min_interval <= max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        self.client = client
        self._board = TaskBoard(Timing.scaled(min_interval, max_interval), clock)
        self._delivery = Delivery(self._board, client)
        self._poller = Poller(self._board, client, self._delivery, wait=wait)
        # the board's lock guards these three too
        self._early: OrderedDict[str, Task] = OrderedDict()
        self._receivers: list[UpdateFeed] = []
        self._unsubscribers: list[Callable[[], None]] = []
        if webhooks is not None:
            self.listen(webhooks)

    def __repr__(self) -> str:
        with self._board.locked():
            active = len(self._board.active())
            running = self._poller.running
        return f"<TaskTracker {active} active task(s), poller {'running' if running else 'idle'}>"

    def __enter__(self) -> TaskTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public API -------------------------------------------------------------------------

    def track(
        self,
        task_id: str,
        on_update: UpdateCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TrackHandle:
        """Follow ``task_id``; ``on_update(task)`` fires on each change, ``on_progress(pct)``
        about every 0.5 s while it runs. A task already known is replayed to the new callbacks.
        """
        subscription = Subscription(on_update, on_progress)
        self._delivery.subscribe(task_id, subscription)
        self._ensure_thread()
        self._apply_early_push(task_id)
        self._poller.wake()
        return TrackHandle(self, task_id, subscription)

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until ``task_id`` is finished and return it (tracking it if needed).

        Raises `TaskFailedError` when it failed, `TaskTimeoutError` (holding the last state)
        when ``timeout`` seconds pass or the tracker is stopped; the task goes on either way.
        """
        if self._poller.on_thread:
            raise RuntimeError("wait() called from a tracker callback would block the poller")
        entry = self._waiting_on(task_id)
        try:
            entry.settled.wait(timeout)
        finally:
            with self._board.locked():
                entry.waiters -= 1
        return self._outcome(entry, timeout)

    async def wait_async(self, task_id: str, timeout: float | None = None) -> Task:
        """`wait` for async code: the same outcome, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = self._waiting_on(task_id)
        with self._board.locked():
            if entry.settled.is_set():
                future.set_result(None)
            else:
                entry.futures.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._board.locked():
                entry.waiters -= 1
                if (loop, future) in entry.futures:
                    entry.futures.remove((loop, future))
        return self._outcome(entry, timeout)

    def latest(self, task_id: str) -> Task | None:
        """The latest state delivered for ``task_id``, or None."""
        return self._delivery.latest(task_id)

    def refresh(self) -> None:
        """Poll every tracked task now (a refresh button, or where thread updates don't show)."""
        self._board.due_now()
        self._ensure_thread()
        self._poller.wake()

    def listen(self, receiver: UpdateFeed) -> None:
        """Take pushed updates from a webhook receiver (``receiver.subscribe(callback)``)."""
        with self._board.locked():
            if any(r is receiver for r in self._receivers):
                return
            self._receivers.append(receiver)
            self._unsubscribers.append(receiver.subscribe(self._on_push))

    def stop(self) -> None:
        """Stop polling now: join the thread, release waiters, drop unfinished tasks.

        Finished tasks stay known to `latest`; ``track`` starts a fresh thread.
        """
        board = self._board
        with board.locked():
            thread, stop = self._poller.detach()
            dropped = board.drop_active()
            unsubscribers, self._unsubscribers = self._unsubscribers, []
        stop.set()
        self._poller.wake()
        for unsubscribe in unsubscribers:
            unsubscribe()
        self._poller.join(thread)
        for entry in dropped:
            board.settle(entry, None)

    # -- bookkeeping ------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        """Start the poller if there is work and none runs."""
        with self._board.locked():
            if self._poller.start() and not self._unsubscribers:  # stopped: listen again
                self._unsubscribers = [r.subscribe(self._on_push) for r in self._receivers]

    def _waiting_on(self, task_id: str) -> Entry:
        """The entry of ``task_id``, counted as waited for (and polled, if it was not)."""
        with self._board.locked():
            entry = self._board.entry(task_id)
            entry.waiters += 1
        self._ensure_thread()
        self._apply_early_push(task_id)
        self._poller.wake()
        return entry

    def _cancel(self, task_id: str, subscription: Subscription) -> None:
        self._board.unsubscribe(task_id, subscription)

    def _outcome(self, entry: Entry, timeout: float | None) -> Task:
        """The one ending shared by wait and wait_async."""
        final = entry.final
        if final is None:
            raise TaskTimeoutError(entry.latest, entry.task_id, timeout if entry.active else None)
        if final.is_failed:
            raise TaskFailedError(final)
        return final

    # -- pushed updates ---------------------------------------------------------------------

    def _on_push(self, task: Task) -> None:
        with self._board.locked():
            known = self._board.knows(task.task_id)
            if not known:
                self._early[task.task_id] = task
                self._early.move_to_end(task.task_id)
                while len(self._early) > EARLY_PUSHES:
                    self._early.popitem(last=False)
        if known:
            self._delivery.deliver(task, self._board.clock())

    def _apply_early_push(self, task_id: str) -> None:
        with self._board.locked():
            task = self._early.pop(task_id, None)
        if task is not None:
            self._delivery.deliver(task, self._board.clock())
