"""Slow work off the kernel thread, in separate lanes so one kind cannot starve another.

A hanging ``/account`` (the credits in the header) must not hold up the videos of any panel,
nor the credits of a panel on another backend: account calls (credits, cancels, image
uploads) run in one lane per backend, media work (reading a clip's bytes, saving it,
previewing a typed URL) in its own lane, posters in another. Lanes are
small pools shared by every panel (a re-run cell pins no threads of its own). Each lane is
bounded: the same piece of work (a key) is never queued twice (once it has started, it may be
queued again: what it read may already be stale), a full queue refuses more, and work that
waited past its deadline is dropped instead of run late. The calls themselves carry
deadlines (the client's, and the media reader's).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger("runway_widget.widget")


class Lane:
    """A bounded pool for one kind of background work."""

    def __init__(
        self,
        name: str,
        *,
        workers: int = 2,
        queue_limit: int = 64,
        max_wait: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._workers = workers
        self._queue_limit = queue_limit
        self._max_wait = max_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: set[Hashable] = set()
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"<Lane {self.name}: {len(self._pending)} pending>"

    def submit(self, key: Hashable, fn: Callable[..., object], *args: Any,
               dropped: Callable[[], object] | None = None) -> bool:
        """Run ``fn(*args)`` in the lane; False when refused (already queued, or full).

        ``dropped`` is called when the work will never run (the queue is full, or it waited
        past the lane's deadline), so whoever said "loading…" can say it will not come; work
        refused because the same key is queued will run, and is not "dropped".
        """
        with self._lock:
            if key in self._pending:
                return False
            if len(self._pending) >= self._queue_limit:
                logger.warning("%s lane full: dropped %r", self.name, key)
                refused = True
            else:
                refused = False
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self._workers, thread_name_prefix=f"runway-widget-{self.name}"
                    )
                self._pending.add(key)
                executor = self._executor
        if refused:
            _tell(dropped)
            return False
        queued_at = self._clock()
        try:
            executor.submit(self._run, key, queued_at, fn, args, dropped)
        except RuntimeError:  # the interpreter is shutting down
            self._done(key)
            return False
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self, key: Hashable, queued_at: float, fn: Callable[..., object],
             args: tuple[Any, ...], dropped: Callable[[], object] | None) -> None:
        self._done(key)  # started: asking again now queues it again (it may come too late)
        try:
            if self._clock() - queued_at > self._max_wait:
                logger.info("%s lane: %r waited too long, dropped", self.name, key)
                _tell(dropped)
                return
            fn(*args)
        except Exception:
            logger.exception("%s lane: background work failed", self.name)

    def _done(self, key: Hashable) -> None:
        with self._lock:
            self._pending.discard(key)

    def shutdown(self) -> None:
        """Stop taking work; running work finishes in its own time."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            with contextlib.suppress(RuntimeError):
                executor.shutdown(wait=False, cancel_futures=True)


def _tell(dropped: Callable[[], object] | None) -> None:
    if dropped is None:
        return
    try:
        dropped()
    except Exception:
        logger.exception("background work: telling of dropped work failed")


# Clip bytes for opened players and saves: what the user is waiting to see.
MEDIA = Lane("media", workers=3, queue_limit=256, max_wait=300.0)
# Poster frames for lists and saved notebooks: a backend that is slow to give a clip's bytes
# delays posters, never a player.
POSTERS = Lane("posters", workers=1, queue_limit=256, max_wait=600.0)
# Account calls (credits, cancels, uploads) may hang on a bad server: one lane per backend,
# at most this many.
ACCOUNT_LANES = 8
_account_lanes: OrderedDict[str, Lane] = OrderedDict()
_account_lock = threading.Lock()


def account_lane(backend: str) -> Lane:
    """The lane for account calls to ``backend``. With more backends than lanes, the least
    recently used backend's lane is retired (a call still hanging there ends by its own
    deadline), never handed on: a new backend must not wait behind another's hung call."""
    with _account_lock:
        lane = _account_lanes.pop(backend, None)
        if lane is None:
            if len(_account_lanes) >= ACCOUNT_LANES:
                _, retired = _account_lanes.popitem(last=False)
                retired.shutdown()
            lane = Lane("account", workers=1, queue_limit=16, max_wait=60.0)
        _account_lanes[backend] = lane
        return lane
