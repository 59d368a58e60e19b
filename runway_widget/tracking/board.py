"""What the parts of a `TaskTracker` share: its tasks and their locks.

The tracker, its delivery path and its poller each handle one side of the same tasks, so
the entries, the clock, the timing and the two locks live here, in one place, and every
part is handed the same board.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable
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


class TaskBoard:
    """The entries of one tracker, by task id, and the locks every part takes.

    ``lock`` guards the entries and each part's shared state. ``deliver_lock`` lets one
    delivery run at a time (updates reach callbacks in order); it is taken before ``lock``.
    """

    def __init__(self, timing: Timing, clock: Callable[[], float]) -> None:
        self.timing = timing
        self.clock = clock
        self.lock = threading.RLock()
        self.deliver_lock = threading.RLock()
        self.entries: dict[str, Entry] = {}

    def entry(self, task_id: str) -> Entry:
        """The entry of ``task_id``, made on first use (called with the lock held)."""
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("task_id must be a non-empty string")
        entry = self.entries.get(task_id)
        if entry is None:
            entry = Entry(task_id, PollPlan(self.timing, self.clock()))
            self.entries[task_id] = entry
        return entry

    def active(self) -> list[Entry]:
        """The entries still followed (called with the lock held)."""
        return [e for e in self.entries.values() if e.active]

    def settle(self, entry: Entry, final: Task | None) -> None:
        """Release everyone waiting on ``entry``: with its final task, or with None on stop."""
        with self.lock:
            entry.final = final
            futures, entry.futures = entry.futures, []
        entry.settled.set()
        for loop, future in futures:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits any more
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
