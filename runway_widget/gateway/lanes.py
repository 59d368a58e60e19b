"""Bounded lanes for the gateway's slow outbound work, so one kind cannot starve another.

Submissions upstream, clip copies and webhook pushes each run in a `Lane` of their own:
a fixed number of workers and a bounded queue, so a trickling clip or a receiver that never
answers ties up its own lane's workers only. Work due later (a retry) waits in the queue,
not in a sleeping worker. Workers are daemon threads and `close` waits a bounded time:
a stop is never held up by a call still running (each has its own deadline anyway).

Within a lane, `OwnerQueues` keeps participants apart: each one's work waits in a queue of
their own and only one item of theirs is in the lane at a time (their turn), so a participant
whose clips trickle or whose receiver never answers holds one worker, never the whole lane.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["Lane", "LaneClosed", "LaneFull", "OwnerQueues"]

logger = logging.getLogger("runway_widget.gateway")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class LaneFull(Exception):
    """The lane's queue is full: the work was not taken (nothing of it ran)."""


class LaneClosed(LaneFull):
    """The lane was closed: the gateway is stopping, the work was not taken."""


class _Job:
    __slots__ = ("args", "call", "future")

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.call, self.args = call, args
        self.future: Future[Any] = Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.call(*self.args)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class Lane:
    """``workers`` daemon threads serving at most ``capacity`` waiting jobs, soonest first."""

    def __init__(self, name: str, workers: int, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self._ready = threading.Condition()
        self._queue: list[tuple[float, int, _Job]] = []  # (due, order, job)
        self._order = itertools.count()
        self._closed = False
        self._running = 0  # workers inside a call now
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``call(*args)`` on a free worker; raises `LaneFull` when the queue is."""
        return self.submit_after(0.0, call, *args)

    def submit_after(self, delay: float, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``call(*args)`` once ``delay`` seconds have passed, holding no worker till then."""
        job = _Job(call, args)
        with self._ready:
            if self._closed:
                raise LaneClosed(f"the {self.name} lane is closed")
            if len(self._queue) >= self.capacity:
                raise LaneFull(f"the {self.name} lane has {self.capacity} jobs waiting")
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), job))
            self._ready.notify()
        return job.future

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Await ``call(*args)`` run in the lane (`LaneFull` at once if it cannot be queued)."""
        return await asyncio.wrap_future(self.submit(call, *args))

    @property
    def waiting(self) -> int:
        with self._ready:
            return len(self._queue)

    def close(self, grace: float = 0.0) -> None:
        """Cancel waiting jobs and give running ones up to ``grace`` seconds in all."""
        with self._ready:
            self._closed = True
            waiting, self._queue = self._queue, []
            self._ready.notify_all()
        for *_, job in waiting:
            job.future.cancel()
        until = time.monotonic() + grace
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, until - time.monotonic()))
        with self._ready:
            busy = self._running
        if busy:
            logger.info("%s: %d call(s) still running are left to their deadlines", self.name, busy)

    def _work(self) -> None:
        while True:
            with self._ready:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if self._queue and self._queue[0][0] <= now:
                        _, _, job = heapq.heappop(self._queue)
                        self._running += 1
                        break
                    self._ready.wait(self._queue[0][0] - now if self._queue else None)
            try:
                job.run()
            finally:
                with self._ready:
                    self._running -= 1


class OwnerQueues(Generic[K, T]):
    """Work kept per owner, handed out one item of each owner at a time (the owner's turn).

    `put` queues an item under a key (a newer item for a key still waiting replaces it, in
    its place: the newest state wins) and says whether the owner's turn must be started;
    the turn `take`s the oldest item, and once it is done, `done` says whether the owner
    has more (their turn goes on: queue it at the back of the lane, behind the others).
    """

    def __init__(self, per_owner: int) -> None:
        self._per_owner = per_owner
        self._queues: dict[Hashable, OrderedDict[K, T]] = {}  # owners whose turn runs
        self._lock = threading.Lock()

    def put(self, owner: Hashable, key: K, item: T) -> bool | None:
        """True: start the owner's turn; False: it waits for their turn; None: refused, the
        owner already has ``per_owner`` items waiting."""
        with self._lock:
            queue = self._queues.get(owner)
            if queue is None:
                self._queues[owner] = OrderedDict({key: item})
                return True
            if key in queue or len(queue) < self._per_owner:
                queue[key] = item
                return False
            return None

    def take(self, owner: Hashable) -> tuple[K, T]:
        """The owner's oldest waiting item (called by their turn)."""
        with self._lock:
            return self._queues[owner].popitem(last=False)

    def done(self, owner: Hashable) -> bool:
        """The item taken is done: True if the owner has another (their turn goes on)."""
        with self._lock:
            if self._queues[owner]:
                return True
            del self._queues[owner]
            return False

    def drop(self, owner: Hashable) -> list[tuple[K, T]]:
        """Forget the owner's waiting items and end their turn; returns what was dropped."""
        with self._lock:
            return list(self._queues.pop(owner, OrderedDict()).items())
