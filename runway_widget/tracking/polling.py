"""The tracker's background thread: batched, budgeted, predictive polling.

It sleeps on a `threading.Event` (``wake()`` cuts the sleep short), fetches every due task
in one ``fetch-many`` request per 20 tasks, and pulls forward tasks that are due soon so a
request carries as many as it can. Every read first takes a token from the client's request
budget. Errors pause every poll for a growing, jittered delay (or the server's
``Retry-After``); they never drop a task. The thread ends by itself once nothing is left
to poll.
"""

from __future__ import annotations

import atexit
import logging
import math
import random
import threading
import weakref
from collections.abc import Callable

from ..errors import ApiframeError, RateLimitError
from ..models import FETCH_MANY_LIMIT, Task
from .board import Entry, TaskBoard, TaskSource
from .delivery import Delivery

__all__ = ["JOIN_TIMEOUT", "RETRY_AFTER_LIMIT", "THREAD_NAME", "UNKNOWN_LIMIT", "Poller"]

logger = logging.getLogger("runway_widget.tracking")

THREAD_NAME = "runway-widget-poller"
UNKNOWN_LIMIT = 4  # single checks that find nothing before a task is given up as unknown
JOIN_TIMEOUT = 5.0  # stop() waits this long for a request in flight
RETRY_AFTER_LIMIT = 10  # a server's Retry-After pauses polling at most this many max_intervals


Wait = Callable[[threading.Event, float], object]  # Event.wait, or a test clock's


class Poller:
    """Keeps a board's active tasks current from one named daemon thread.

    The thread repeats `poll_once` and sleeps until the time it returns, on ``wait``
    (``threading.Event.wait`` unless given: a test's clock can stand in for it, as in
    tqdm's monitor), so the same steps can be driven on a clock that only moves when told.
    """

    def __init__(
        self, board: TaskBoard, client: TaskSource, delivery: Delivery, *,
        wait: Wait = threading.Event.wait,
    ) -> None:
        self._board = board
        self._client = client
        self._delivery = delivery
        self._wait = wait
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None  # the poller, while it has work
        self._last_thread: threading.Thread | None = None  # may still be ending after idling
        self._stop = threading.Event()
        self._hold_until = 0.0
        self._errors = 0
        _POLLERS.add(self)

    # -- lifecycle (under the board's lock where it says so) ---------------------------------

    @property
    def running(self) -> bool:
        """True while a thread polls (read under the board's lock)."""
        return self._thread is not None

    @property
    def on_thread(self) -> bool:
        """True when called from the polling thread, where blocking would stall every task."""
        return threading.current_thread() is self._thread

    def start(self) -> bool:
        """Start the thread if there is work and none runs (lock held); True if it started."""
        if self._thread is not None or not self._board.active():
            return False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=THREAD_NAME, daemon=True
        )
        self._thread.start()
        self._last_thread = self._thread
        return True

    def detach(self) -> tuple[threading.Thread | None, threading.Event]:
        """Disown the thread (lock held): the last one started, and the event that stops it."""
        self._thread = None
        return self._last_thread, self._stop

    def wake(self) -> None:
        """Cut the thread's sleep short: there is new work, or it should stop."""
        self._wake.set()

    @staticmethod
    def join(thread: threading.Thread | None) -> None:
        """Give a detached thread a moment to finish the request in flight."""
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                logger.debug("poller still finishing a request; it exits right after")

    # -- one step ---------------------------------------------------------------------------

    def poll_once(self, now: float, *, stop: threading.Event | None = None) -> float | None:
        """Do what is due at ``now``: move the bars, poll the tasks that are due (one batch).

        Returns when the next step is due (``now`` itself: more is due already), or None
        when nothing is left to follow. Never blocks, but for the one request it makes.
        """
        stop = stop if stop is not None else self._stop
        active = self._board.active()
        if not active:
            return None
        next_due = min(e.plan.due for e in active)
        animate = any(e.animated for e in active)
        if animate:
            self._delivery.animate(now, stop)
        start_at = max(next_due, self._hold_until)
        if start_at <= now:
            delay = self._client.read_budget.reserve()
            if delay <= 0:
                self._poll(now, stop)
                return now
            start_at = now + delay
        return min(start_at, self._delivery.next_progress) if animate else start_at

    def _run(self, stop: threading.Event) -> None:
        board = self._board
        me = threading.current_thread()
        while not stop.is_set():
            self._wake.clear()
            with board.locked():
                if self._thread is not me:
                    return
                if not board.active():
                    self._thread = None
                    return
            try:
                due = self.poll_once(board.clock(), stop=stop)
            except Exception:
                logger.exception("unexpected error in the poller; it slows down and goes on")
                self._back_off(board.clock(), None)
                continue
            pause = 0.0 if due is None else due - board.clock()
            if pause > 0:
                self._wait(self._wake, pause)

    def _select(self, now: float) -> list[Entry]:
        """The tasks for one request: due ones first, then others that are due soon."""
        active = self._board.active()
        singles = [e for e in active if e.single and e.plan.due <= now]
        if singles:
            chosen = min(singles, key=lambda e: e.plan.due)
            chosen.on_time = True
            return [chosen]
        pool = sorted((e for e in active if not e.single), key=lambda e: e.plan.due)
        due = [e for e in pool if e.plan.due <= now][:FETCH_MANY_LIMIT]
        if not due:
            return []
        extra = [e for e in pool[len(due) :] if e.plan.due - e.plan.pull_window() <= now]
        for e in due:
            e.on_time = True
        for e in extra[: FETCH_MANY_LIMIT - len(due)]:
            e.on_time = False
        return due + extra[: FETCH_MANY_LIMIT - len(due)]

    def _poll(self, now: float, stop: threading.Event) -> None:
        """One request for the tasks due at ``now`` (a token already taken)."""
        with self._board.locked():
            batch = self._select(now)
        if not batch:
            return
        ids = [e.task_id for e in batch]
        try:
            replies = self._client.fetch_batch(ids, retry=False)
        except RateLimitError as exc:
            self._back_off(now, exc, exc.retry_after)
            return
        except ApiframeError as exc:
            self._back_off(now, exc)
            return
        if stop.is_set():
            return
        self._errors = 0
        now = self._board.clock()
        for entry in batch:
            task = replies.get(entry.task_id)
            if task is not None:
                entry.unknown = 0
                entry.single = False
                self._delivery.deliver(task, now, poll=entry, stop=stop)
            elif len(ids) > 1:
                entry.single = True
                entry.plan.due = now
            else:
                self._not_found(entry, now, stop)

    def _not_found(self, entry: Entry, now: float, stop: threading.Event) -> None:
        timing = self._board.timing
        entry.unknown += 1
        entry.single = True
        if entry.unknown < UNKNOWN_LIMIT:
            gap = timing.min_interval * 2.0**entry.unknown
            entry.plan.due = now + min(timing.max_interval, gap)
            return
        logger.warning("task %s is unknown to the server; giving up on it", entry.task_id)
        failed = Task.unknown(entry.task_id, f" (not found {entry.unknown} times in a row)")
        self._delivery.deliver(failed, now, stop=stop, journal=False)

    def _back_off(
        self, now: float, exc: Exception | None, retry_after: float | None = None
    ) -> None:
        """Pause every poll: for ``Retry-After``, else a jittered, growing delay."""
        timing = self._board.timing
        self._errors += 1
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            retry_after = min(retry_after, RETRY_AFTER_LIMIT * timing.max_interval)
            delay = retry_after + random.uniform(0, 0.1 * max(retry_after, 1.0))
        else:
            growth = 2.0 ** min(self._errors, 32)  # capped: a long outage must not overflow
            cap = min(timing.max_interval, timing.min_interval * growth)
            delay = cap / 2 + random.uniform(0, cap / 2)
        self._hold_until = now + delay
        logger.warning("polling paused %.1f s after %s", delay, exc or "an unexpected error")


_POLLERS: weakref.WeakSet[Poller] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """Let pollers end before the interpreter tears down (no join, like tqdm's monitor)."""
    for poller in list(_POLLERS):
        poller._stop.set()
        poller._wake.set()
