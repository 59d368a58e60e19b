"""The tests' one clock: time that moves only when a test moves it.

Pass it wherever the package takes a ``clock`` (it is callable), its `sleep` where it takes
a ``sleep`` (time passes at once), and its `wait` where a thread sleeps on an event (the
tracker's poller): such a thread then sleeps until the test moves time past its wake-up,
or its event is set.

`run_until` moves time from one wake-up to the next, each time letting the waiting threads
finish their step (`settle`), so a job that takes minutes on the clock is followed in
milliseconds and nothing happens between two wake-ups: a test that checks that nothing
happened looks at what the threads did, never at a wall clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

SETTLE_SECONDS = 10.0  # real time a thread may take to finish one step
_POLL = 0.01  # real seconds between looks at an event a waiting thread was not told of


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._changed = threading.Condition()
        self._threads: set[threading.Thread] = set()  # threads that ever waited here
        self._waiting: dict[threading.Thread, tuple[threading.Event, float]] = {}

    def __call__(self) -> float:
        with self._changed:
            return self._now

    def __repr__(self) -> str:
        return f"<FakeClock {self()}>"

    # -- moving time ---------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        if not 0 <= seconds < 1e6:
            raise AssertionError(f"the fake clock was asked to move by {seconds!r} s")
        with self._changed:
            self._now += seconds
            self._changed.notify_all()

    def sleep(self, seconds: float) -> None:
        """For code that sleeps on the caller's own thread: the time passes at once."""
        self.advance(max(0.0, seconds))

    def wait(self, event: threading.Event, timeout: float | None = None) -> bool:
        """`threading.Event.wait` on this clock: True once ``event`` is set, False once
        ``timeout`` seconds of this clock have passed."""
        me = threading.current_thread()
        with self._changed:
            until = float("inf") if timeout is None else self._now + timeout
            self._threads.add(me)
            self._waiting[me] = (event, until)
            self._changed.notify_all()  # a settling test learns this thread is idle
            try:
                while not event.is_set() and self._now < until:
                    self._changed.wait(_POLL)
                return event.is_set()
            finally:
                del self._waiting[me]
                self._changed.notify_all()

    # -- letting threads catch up --------------------------------------------------------------

    def settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Return once every thread that waits on this clock is idle again: waiting for a
        time still ahead (its event unset), or ended."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._idle():
                if time.monotonic() > deadline:
                    busy = [t.name for t in self._threads if t.is_alive()]
                    raise AssertionError(f"threads did not settle on the fake clock: {busy}")
                self._changed.wait(_POLL)

    def next_wakeup(self, grace: float = 0.0) -> float | None:
        """The earliest time a waiting thread wakes at; None if none waits for a time, even
        after ``grace`` real seconds (a thread just started may not have waited yet)."""
        deadline = time.monotonic() + grace
        with self._changed:
            while True:
                times = [u for _, u in self._waiting.values() if u != float("inf")]
                if times or time.monotonic() > deadline:
                    return min(times) if times else None
                self._changed.wait(_POLL)

    def run_until(self, done: Callable[[], Any], *, limit: float = 3_600.0) -> Any:
        """Move time wake-up by wake-up until ``done()`` is true (returned), at most
        ``limit`` seconds of this clock."""
        end = self() + limit
        while True:
            self.settle()
            outcome = done()
            if outcome:
                return outcome
            wake = self.next_wakeup(grace=0.5)
            if wake is None or wake > end:
                raise AssertionError(f"nothing left to happen before {done!r} held")
            self.advance(max(0.0, wake - self()))

    def run_for(self, seconds: float) -> None:
        """Let ``seconds`` of this clock pass, every thread waking on time within them."""
        end = self() + seconds
        grace = 0.5  # a thread the test just started may not have waited yet
        while True:
            self.settle()
            wake = self.next_wakeup(grace)
            grace = 0.0
            if wake is None or wake > end:
                self.advance(max(0.0, end - self()))
                self.settle()
                return
            self.advance(max(0.0, wake - self()))

    @contextlib.contextmanager
    def driving(self) -> Iterator[None]:
        """Move time from wake-up to wake-up on a thread of its own while the test blocks
        (``tracker.wait``, ``await``); what went wrong there is raised on exit."""
        stop = threading.Event()
        failures: list[BaseException] = []

        def drive() -> None:
            try:
                while not stop.is_set():
                    self.settle()
                    wake = self.next_wakeup(grace=0.01)
                    if wake is not None:
                        self.advance(max(0.0, wake - self()))
            except BaseException as exc:  # reported by the test's own thread
                failures.append(exc)

        driver = threading.Thread(target=drive, name="fake-clock-driver", daemon=True)
        driver.start()
        try:
            yield
        finally:
            stop.set()
            driver.join(SETTLE_SECONDS)
        if failures:
            raise failures[0]

    def _idle(self) -> bool:
        for thread in self._threads:
            if not thread.is_alive():
                continue
            waiting = self._waiting.get(thread)
            if waiting is None:
                return False
            event, until = waiting
            if event.is_set() or self._now >= until:
                return False
        return True
