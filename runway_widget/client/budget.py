"""A token bucket that keeps one client's reads under a request rate.

Every read of a client (fetch, fetch_batch, account) takes one token, whoever calls it:
the background poller, a ``wait()`` loop or a notebook cell. The bucket refills at
``rate`` tokens a second and holds at most ``burst``, so short bursts pass at once and a
sustained load settles at ``rate``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RequestBudget"]


class RequestBudget:
    """Thread-safe token bucket; ``rate=float("inf")`` disables it."""

    def __init__(
        self,
        rate: float = 2.0,
        burst: int = 2,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = clock()

    def __repr__(self) -> str:
        return f"RequestBudget(rate={self.rate:g}, burst={self.burst})"

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.rate)

    def reserve(self) -> float:
        """Take a token and return 0.0, or take nothing and return the seconds until one is free.

        Non-blocking, so a scheduler can plan its next tick around the budget.
        """
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._stamp = now
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def available_in(self) -> float:
        """Seconds until a token is free (0.0: now), taking nothing."""
        if self.unlimited:
            return 0.0
        with self._lock:
            elapsed = max(0.0, self._clock() - self._stamp)
            tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def refund(self, tokens: float = 1.0) -> None:
        """Give back ``tokens`` (never above ``burst``): what was taken was not spent after all."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + tokens)

    def acquire(self, cancel: threading.Event | None = None) -> bool:
        """Block until a token is taken (True) or ``cancel`` is set (False)."""
        while True:
            if cancel is not None and cancel.is_set():
                return False
            wait = self.reserve()
            if wait <= 0.0:
                return True
            if cancel is None:
                self._sleep(wait)
            elif cancel.wait(wait):
                return False
