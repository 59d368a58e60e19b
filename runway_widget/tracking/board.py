"""What the parts of a `TaskTracker` share: its tasks, its clock and its two locks.

The tracker, its delivery path and its poller each handle one side of the same tasks, so
the entries, the clock and the timing live here, and the board's methods are the only way
to them. Two locks guard them: `locked` (the entries, held briefly) and `delivering` (one
delivery at a time, so updates reach callbacks in order, held while callbacks run). The
delivery lock comes first: asking for it while holding the board's lock raises, so the
order is checked, not a convention.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from ..models import Task
from .schedule import PollPlan, Timing

if TYPE_CHECKING:
    from ..client.budget import RequestBudget
    from ..store import JobStore

__all__ = ["Entry", "ProgressCallback", "Subscription", "TaskBoard", "TaskSource", "UpdateCallback"]

UpdateCallback = Callable[[Task], object]
ProgressCallback = Callable[[float], object]


class TaskSource(Protocol):
    """What the tracker needs of a client; `runway_widget.client.apiframe.ApiframeClient` is one."""

    @property
    def read_budget(self) -> RequestBudget: ...

    @property
    def store(self) -> JobStore: ...

    @property
    def base_url(self) -> str: ...

    def fetch_batch(self, ids: list[str], *, retry: bool = True) -> dict[str, Task]: ...


@dataclasses.dataclass(eq=False)
class Subscription:
    on_update: UpdateCallback | None
    on_progress: ProgressCallback | None


class Entry:
    """Everything the tracker knows about one task."""

    def __init__(self, task_id: str, plan: PollPlan) -> None:
        self.task_id = task_id
        self.plan = plan
        self.subs: list[Subscription] = []
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

    @property
    def animated(self) -> bool:
        """Someone watches its progress bar."""
        return any(s.on_progress for s in self.subs)


class TaskBoard:
    """The entries of one tracker, by task id, behind the board's two locks."""

    def __init__(self, timing: Timing, clock: Callable[[], float]) -> None:
        self.timing = timing
        self.clock = clock
        self._entries: dict[str, Entry] = {}
        self._lock = threading.RLock()
        self._deliver_lock = threading.RLock()
        self._held = threading.local()  # how deep this thread is inside `locked`

    # -- the two locks ---------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the board's lock: the entries and every part's shared state."""
        with self._lock:
            self._held.depth = getattr(self._held, "depth", 0) + 1
            try:
                yield
            finally:
                self._held.depth -= 1

    @contextlib.contextmanager
    def delivering(self) -> Iterator[None]:
        """Hold the delivery lock: one delivery at a time, callbacks included."""
        if getattr(self._held, "depth", 0):
            raise RuntimeError("the delivery lock is taken before the board's lock, not inside")
        with self._deliver_lock:
            yield

    # -- the entries (each method takes the board's lock itself) ---------------------------

    def entry(self, task_id: str) -> Entry:
        """The entry of ``task_id``, made on first use."""
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("task_id must be a non-empty string")
        with self.locked():
            entry = self._entries.get(task_id)
            if entry is None:
                entry = Entry(task_id, PollPlan(self.timing, self.clock()))
                self._entries[task_id] = entry
            return entry

    def get(self, task_id: str) -> Entry | None:
        with self.locked():
            return self._entries.get(task_id)

    def knows(self, task_id: str) -> bool:
        with self.locked():
            return task_id in self._entries

    def active(self) -> list[Entry]:
        """The entries still followed."""
        with self.locked():
            return [e for e in self._entries.values() if e.active]

    def due_now(self) -> None:
        """Make every followed task due at once (a refresh)."""
        with self.locked():
            now = self.clock()
            for entry in self._entries.values():
                if entry.active:
                    entry.plan.due = now

    def unsubscribe(self, task_id: str, subscription: Subscription) -> None:
        """Drop one subscription; a task nobody follows or waits for any more is forgotten."""
        with self.locked():
            entry = self._entries.get(task_id)
            if entry is None or subscription not in entry.subs:
                return
            entry.subs.remove(subscription)
            if entry.active and not entry.subs and not entry.waiters:
                del self._entries[task_id]

    def drop_active(self) -> list[Entry]:
        """Forget every unfinished task (the finished ones stay known); returns them."""
        with self.locked():
            dropped = [e for e in self._entries.values() if e.active]
            for entry in dropped:
                del self._entries[entry.task_id]
            return dropped

    def settle(self, entry: Entry, final: Task | None) -> None:
        """Release everyone waiting on ``entry``: with its final task, or with None on stop."""
        with self.locked():
            entry.final = final
            futures, entry.futures = entry.futures, []
        entry.settled.set()
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits any more
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
