"""One background poller that keeps many tasks current with few requests.

A notebook cell may block for minutes (``time.sleep``, a long computation), and while it
does, an asyncio task on the kernel's loop barely runs: only a thread keeps progress bars
moving. So the tracker owns one named daemon thread that sleeps on a `threading.Event`
(``stop()`` wakes it at once), fetches every due task in one ``fetch-many`` request per
20 tasks, and times its polls from each task's progress rate (see `runway_widget.schedule`).
Every read first takes a token from the client's request budget, so no number of tasks
can exceed it. Errors slow polling down; they never drop a task.

Updates reach callbacks once per visible change and never go backwards, whether they came
by poll or by webhook push. Callbacks run on the poller thread (or a webhook thread): they
should only set widget values, never create or display widgets. Nothing here prints.

``wait()`` only blocks on an event, so it also works from inside running async code (it
blocks that loop, like any synchronous call) and never needs to drive a coroutine.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import math
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ApiframeError, RateLimitError, TaskFailedError, TaskTimeoutError
from .models import FETCH_MANY_LIMIT, Task
from .schedule import STATUS_ORDER, PollPlan, Timing

if TYPE_CHECKING:
    from .budget import RequestBudget
    from .store import JobStore

__all__ = ["TaskSource", "TaskTracker", "TrackHandle", "UpdateFeed"]

logger = logging.getLogger("runway_widget.tracker")

THREAD_NAME = "runway-widget-poller"
UNKNOWN_LIMIT = 4  # single checks that find nothing before a task is given up as unknown
PROGRESS_PERIOD = 0.5  # seconds between interpolated progress callbacks
JOIN_TIMEOUT = 5.0  # stop() waits this long for a request in flight
EARLY_PUSHES = 256  # pushes kept for tasks not tracked yet (a webhook may beat track())

UpdateCallback = Callable[[Task], object]
ProgressCallback = Callable[[float], object]
RETRY_AFTER_LIMIT = 10  # a server's Retry-After pauses polling at most this many max_intervals


class TaskSource(Protocol):
    """What the tracker needs of a client; `runway_widget.client.ApiframeClient` is one."""

    @property
    def read_budget(self) -> RequestBudget: ...

    @property
    def store(self) -> JobStore: ...

    @property
    def base_url(self) -> str: ...

    def fetch_batch(self, ids: list[str], *, retry: bool = True) -> dict[str, Task]: ...


class UpdateFeed(Protocol):
    """Pushed updates (a `runway_widget.webhooks.WebhookReceiver`, a gateway's upstream)."""

    def subscribe(self, callback: Callable[[Task], object]) -> Callable[[], None]: ...


@dataclasses.dataclass(eq=False)
class _Subscription:
    on_update: UpdateCallback | None
    on_progress: ProgressCallback | None


class _Entry:
    """Everything the tracker knows about one task."""

    def __init__(self, task_id: str, plan: PollPlan) -> None:
        self.task_id = task_id
        self.plan = plan
        self.subs: list[_Subscription] = []
        self.latest: Task | None = None
        self.final: Task | None = None  # the terminal task, once seen
        self.settled = threading.Event()  # set when final, or when the tracker stopped
        self.futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.waiters = 0
        self.unknown = 0  # consecutive single checks that found nothing
        self.single = False  # omitted from a batch reply: check alone next time
        self.on_time = True  # the last poll was due (not pulled forward)
        self.shown = -1.0  # last value given to on_progress

    @property
    def active(self) -> bool:
        return not self.settled.is_set()


class TrackHandle:
    """One subscription to one task, as returned by `TaskTracker.track`."""

    def __init__(self, tracker: TaskTracker, task_id: str, subscription: _Subscription) -> None:
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
    one task; ``webhooks`` (a `runway_widget.webhooks.WebhookReceiver`) adds pushed updates.
    """

    def __init__(
        self,
        client: TaskSource,
        *,
        webhooks: UpdateFeed | None = None,
        min_interval: float = 0.5,
        max_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_interval <= max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        self.client = client
        self._timing = Timing.scaled(min_interval, max_interval)
        self._clock = clock
        self._lock = threading.RLock()  # guards the state below
        self._deliver_lock = threading.RLock()  # one delivery at a time; taken before _lock
        self._wake = threading.Event()
        self._entries: dict[str, _Entry] = {}
        self._seen: dict[str, Task] = {}
        self._early: OrderedDict[str, Task] = OrderedDict()
        self._thread: threading.Thread | None = None  # the poller, while it has work
        self._last_thread: threading.Thread | None = None  # may still be ending after idling
        self._stop = threading.Event()
        self._hold_until = 0.0
        self._errors = 0
        self._next_progress = 0.0
        self._receivers: list[UpdateFeed] = []
        self._unsubscribers: list[Callable[[], None]] = []
        _TRACKERS.add(self)
        if webhooks is not None:
            self.listen(webhooks)

    def __repr__(self) -> str:
        with self._lock:
            active = sum(e.active for e in self._entries.values())
            running = self._thread is not None
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
        subscription = _Subscription(on_update, on_progress)
        with self._deliver_lock:
            with self._lock:
                entry = self._entry(task_id)
                entry.subs.append(subscription)
                current = entry.latest
                self._ensure_thread()
            if current is not None:
                self._replay(entry, subscription, current)
        self._apply_early_push(task_id)
        self._wake.set()
        return TrackHandle(self, task_id, subscription)

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """Block until ``task_id`` is finished and return it (tracking it if needed).

        Raises `TaskFailedError` when it failed, `TaskTimeoutError` (holding the last state)
        when ``timeout`` seconds pass or the tracker is stopped; the task goes on either way.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("wait() called from a tracker callback would block the poller")
        with self._lock:
            entry = self._entry(task_id)
            entry.waiters += 1
            self._ensure_thread()
        self._apply_early_push(task_id)
        self._wake.set()
        try:
            entry.settled.wait(timeout)
        finally:
            with self._lock:
                entry.waiters -= 1
        return self._outcome(entry, timeout)

    async def wait_async(self, task_id: str, timeout: float | None = None) -> Task:
        """`wait` for async code: the same outcome, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            entry = self._entry(task_id)
            entry.waiters += 1
            if entry.settled.is_set():
                future.set_result(None)
            else:
                entry.futures.append((loop, future))
            self._ensure_thread()
        self._apply_early_push(task_id)
        self._wake.set()
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                entry.waiters -= 1
                if (loop, future) in entry.futures:
                    entry.futures.remove((loop, future))
        return self._outcome(entry, timeout)

    def latest(self, task_id: str) -> Task | None:
        """The latest state delivered for ``task_id``, or None."""
        with self._lock:
            return self._seen.get(task_id)

    def refresh(self) -> None:
        """Poll every tracked task now (a refresh button, or where thread updates don't show)."""
        with self._lock:
            now = self._clock()
            for entry in self._entries.values():
                if entry.active:
                    entry.plan.due = now
            self._ensure_thread()
        self._wake.set()

    def listen(self, receiver: UpdateFeed) -> None:
        """Take pushed updates from a webhook receiver (``receiver.subscribe(callback)``)."""
        with self._lock:
            if any(r is receiver for r in self._receivers):
                return
            self._receivers.append(receiver)
            self._unsubscribers.append(receiver.subscribe(self._on_push))

    def stop(self) -> None:
        """Stop polling now: join the thread, release waiters, drop unfinished tasks.

        Finished tasks stay known to `latest`; ``track`` starts a fresh thread.
        """
        with self._lock:
            thread, stop = self._last_thread, self._stop
            self._thread = None
            dropped = [e for e in self._entries.values() if e.active]
            for entry in dropped:
                del self._entries[entry.task_id]
            unsubscribers, self._unsubscribers = self._unsubscribers, []
        stop.set()
        self._wake.set()
        for unsubscribe in unsubscribers:
            unsubscribe()
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                logger.debug("poller still finishing a request; it exits right after")
        for entry in dropped:
            self._settle(entry, None)

    # -- bookkeeping ------------------------------------------------------------------------

    def _entry(self, task_id: str) -> _Entry:
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("task_id must be a non-empty string")
        entry = self._entries.get(task_id)
        if entry is None:
            entry = _Entry(task_id, PollPlan(self._timing, self._clock()))
            self._entries[task_id] = entry
        return entry

    def _ensure_thread(self) -> None:
        """Start the poller if there is work and none runs (called with the lock held)."""
        if self._thread is not None or not any(e.active for e in self._entries.values()):
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=THREAD_NAME, daemon=True
        )
        self._thread.start()
        self._last_thread = self._thread
        if not self._unsubscribers:  # stopped earlier: listen again
            self._unsubscribers = [r.subscribe(self._on_push) for r in self._receivers]

    def _cancel(self, task_id: str, subscription: _Subscription) -> None:
        with self._lock:
            entry = self._entries.get(task_id)
            if entry is None or subscription not in entry.subs:
                return
            entry.subs.remove(subscription)
            if entry.active and not entry.subs and not entry.waiters:
                del self._entries[task_id]

    def _outcome(self, entry: _Entry, timeout: float | None) -> Task:
        """The one ending shared by wait and wait_async."""
        final = entry.final
        if final is None:
            raise TaskTimeoutError(entry.latest, entry.task_id, timeout if entry.active else None)
        if final.is_failed:
            raise TaskFailedError(final)
        return final

    def _settle(self, entry: _Entry, final: Task | None) -> None:
        with self._lock:
            entry.final = final
            futures, entry.futures = entry.futures, []
        entry.settled.set()
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits any more
                loop.call_soon_threadsafe(_resolve, future)

    # -- the poller thread ------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        me = threading.current_thread()
        while not stop.is_set():
            self._wake.clear()
            with self._lock:
                if self._thread is not me:
                    return
                active = [e for e in self._entries.values() if e.active]
                if not active:
                    self._thread = None
                    return
                next_due = min(e.plan.due for e in active)
                animate = any(s.on_progress for e in active for s in e.subs)
            try:
                if animate:
                    self._animate(stop)
                start_at = max(next_due, self._hold_until)
                now = self._clock()
                if start_at <= now:
                    self._poll_once(stop)
                    continue
                wake_at = min(start_at, self._next_progress) if animate else start_at
                self._wake.wait(max(0.0, wake_at - now))
            except Exception:
                logger.exception("unexpected error in the poller; it slows down and goes on")
                self._back_off(None)

    def _take_token(self, stop: threading.Event) -> bool:
        budget = self.client.read_budget
        while not stop.is_set():
            delay = budget.reserve()
            if delay <= 0:
                return True
            self._animate(stop)
            if stop.wait(min(delay, PROGRESS_PERIOD)):
                return False
        return False

    def _select(self, now: float) -> list[_Entry]:
        """The tasks for one request: due ones first, then others that are due soon."""
        active = [e for e in self._entries.values() if e.active]
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

    def _poll_once(self, stop: threading.Event) -> None:
        if not self._take_token(stop):
            return
        with self._lock:
            batch = self._select(self._clock())
        if not batch:
            return
        ids = [e.task_id for e in batch]
        try:
            replies = self.client.fetch_batch(ids, retry=False)
        except RateLimitError as exc:
            self._back_off(exc, exc.retry_after)
            return
        except ApiframeError as exc:
            self._back_off(exc)
            return
        if stop.is_set():
            return
        self._errors = 0
        now = self._clock()
        for entry in batch:
            task = replies.get(entry.task_id)
            if task is not None:
                entry.unknown = 0
                entry.single = False
                self._deliver(task, now, poll=entry, stop=stop)
            elif len(ids) > 1:
                entry.single = True
                entry.plan.due = now
            else:
                self._not_found(entry, now, stop)

    def _not_found(self, entry: _Entry, now: float, stop: threading.Event) -> None:
        entry.unknown += 1
        entry.single = True
        if entry.unknown < UNKNOWN_LIMIT:
            gap = self._timing.min_interval * 2.0**entry.unknown
            entry.plan.due = now + min(self._timing.max_interval, gap)
            return
        logger.warning("task %s is unknown to the server; giving up on it", entry.task_id)
        failed = Task(
            task_id=entry.task_id,
            status="failed",
            message=(
                f"the server does not know task {entry.task_id} (not found {entry.unknown} "
                "times in a row): check the id, or the backend it was submitted to"
            ),
        )
        self._deliver(failed, now, stop=stop, journal=False)

    def _back_off(self, exc: Exception | None, retry_after: float | None = None) -> None:
        """Pause every poll: for ``Retry-After``, else a jittered, growing delay."""
        self._errors += 1
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            retry_after = min(retry_after, RETRY_AFTER_LIMIT * self._timing.max_interval)
            delay = retry_after + random.uniform(0, 0.1 * max(retry_after, 1.0))
        else:
            growth = 2.0 ** min(self._errors, 32)  # capped: a long outage must not overflow
            cap = min(self._timing.max_interval, self._timing.min_interval * growth)
            delay = cap / 2 + random.uniform(0, cap / 2)
        self._hold_until = self._clock() + delay
        logger.warning("polling paused %.1f s after %s", delay, exc or "an unexpected error")

    # -- delivery ---------------------------------------------------------------------------

    def _on_push(self, task: Task) -> None:
        with self._lock:
            known = task.task_id in self._entries
            if not known:
                self._early[task.task_id] = task
                self._early.move_to_end(task.task_id)
                while len(self._early) > EARLY_PUSHES:
                    self._early.popitem(last=False)
        if known:
            self._deliver(task, self._clock())

    def _apply_early_push(self, task_id: str) -> None:
        with self._lock:
            task = self._early.pop(task_id, None)
        if task is not None:
            self._deliver(task, self._clock())

    def _deliver(
        self,
        task: Task,
        now: float,
        *,
        poll: _Entry | None = None,
        stop: threading.Event | None = None,
        journal: bool = True,
    ) -> None:
        """The one path for every update, polled or pushed: dedup, never backwards."""
        with self._deliver_lock:
            if stop is not None and stop.is_set():
                return
            with self._lock:
                entry = self._entries.get(task.task_id)
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
                self._settle(entry, task)

    def _replay(self, entry: _Entry, sub: _Subscription, task: Task) -> None:
        """Give a new subscriber the state others have already seen (deliver lock held)."""
        if sub.on_update is not None:
            _call(sub.on_update, task, task.task_id)
        if sub.on_progress is not None and entry.shown >= 0:
            _call(sub.on_progress, entry.shown, task.task_id)

    def _show(self, entry: _Entry, subs: list[_Subscription], value: float) -> None:
        if value <= entry.shown:
            return
        entry.shown = value
        for sub in subs:
            if sub.on_progress is not None:
                _call(sub.on_progress, value, entry.task_id)

    def _animate(self, stop: threading.Event) -> None:
        """Move running bars between polls along each task's fitted rate, never past 99."""
        now = self._clock()
        if now < self._next_progress:
            return
        self._next_progress = now + PROGRESS_PERIOD
        with self._deliver_lock:
            if stop.is_set():
                return
            with self._lock:
                running = [
                    (e, list(e.subs))
                    for e in self._entries.values()
                    if e.active and e.latest is not None and any(s.on_progress for s in e.subs)
                ]
                estimates = [(e, subs, e.plan.estimate(now)) for e, subs in running]
            for entry, subs, estimate in estimates:
                if estimate is not None:
                    self._show(entry, subs, round(min(99.0, estimate), 1))

    def _journal(self, task: Task) -> None:
        try:
            self.client.store.record_task(task, backend=self.client.base_url)
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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_TRACKERS: weakref.WeakSet[TaskTracker] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """Let pollers end before the interpreter tears down (no join, like tqdm's monitor)."""
    for tracker in list(_TRACKERS):
        tracker._stop.set()
        tracker._wake.set()
