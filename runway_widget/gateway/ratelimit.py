"""Per-caller request rates: one token bucket per participant (or per address, for /join)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from ..client.budget import RequestBudget

__all__ = ["RateLimiter"]

MAX_KEYS = 10_000  # buckets kept; the least recently used go first (a full bucket again)


class RateLimiter:
    """``rate`` requests a second per key, bursts up to ``burst``; time is injectable."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[Hashable, RequestBudget] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: Hashable) -> int:
        """0 when the request may go ahead; else whole seconds to wait (for ``Retry-After``)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = RequestBudget(self.rate, self.burst, clock=self._clock)
                self._buckets[key] = bucket
                while len(self._buckets) > MAX_KEYS:
                    self._buckets.popitem(last=False)
            self._buckets.move_to_end(key)
        wait = bucket.reserve()
        return 0 if wait <= 0 else max(1, math.ceil(wait))
