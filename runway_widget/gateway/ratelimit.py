"""Per-caller request rates: one token bucket per participant, and the guard on ``/join``.

Addresses here are the client's as `TrustedProxies` read it: a forged ``X-Forwarded-For``
from an untrusted peer is ignored, so it cannot buy a fresh bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable

from ..client.budget import RequestBudget

__all__ = ["JoinGuard", "RateLimiter"]

MAX_KEYS = 10_000  # buckets kept; the least recently used go first (a full bucket again)
# (rate per second, burst) of the join guard's buckets
JOIN_ATTEMPTS = (2.0, 60)  # per address, right or wrong: a room behind one NAT joins at once
WRONG_JOINS = (1 / 120, 10)  # per address: ten wrong codes, then one every two minutes
WRONG_JOINS_ALL = (1.0, 60)  # all addresses together: many addresses guess no faster


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
        return _whole_seconds(bucket.reserve())

    def refund(self, key: Hashable, tokens: float = 1.0) -> None:
        """Give ``key`` back ``tokens`` it took (up to its burst)."""
        with self._lock:
            bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.refund(tokens)


class JoinGuard:
    """Who may try a join code now, so that a short code cannot be guessed.

    Every attempt counts against its address (`JOIN_ATTEMPTS`, generous: a whole room may
    share one address). A code is checked only with a guess left to the address and to
    everyone (`WRONG_JOINS`, `WRONG_JOINS_ALL`); with none left the attempt is refused
    unchecked, so even the right code cannot slip through a flood. A wrong code spends the
    guess; a right one gives it back and one more, so a room's typos are paid for by its
    joins (each takes a seat). The checks of one address take turns (`turn`), so a hundred
    guesses sent at once are counted one by one, not all let through at once.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._attempts = RateLimiter(*JOIN_ATTEMPTS, clock=clock)
        self._wrong = RateLimiter(*WRONG_JOINS, clock=clock)
        self._wrong_all = RequestBudget(*WRONG_JOINS_ALL, clock=clock)
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # on the event loop only

    def attempt(self, address: str) -> int:
        """0 when ``address`` may send a join now; else whole seconds to wait."""
        return self._attempts.retry_after(address)

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """Wait for ``address``'s previous check to end (take `guess` inside)."""
        lock, waiting = self._turns.get(address, (asyncio.Lock(), 0))
        self._turns[address] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._turns[address]
            if waiting == 1:
                del self._turns[address]
            else:
                self._turns[address] = (lock, waiting - 1)

    def guess(self, address: str) -> int:
        """Take one guess: 0 to check the code now; else whole seconds to wait, unchecked."""
        wait = self._wrong.retry_after(address)
        if wait:
            return wait
        everyone = _whole_seconds(self._wrong_all.available_in())
        if everyone:
            self._wrong.refund(address)
        return everyone

    def wrong(self) -> None:
        """The code was wrong (or its seats taken): the guess stays spent, for everyone too."""
        self._wrong_all.reserve()

    def joined(self, address: str) -> None:
        """The code was right: its guess comes back, with one more for the room's typos."""
        self._wrong.refund(address, 2.0)


def _whole_seconds(wait: float) -> int:
    return 0 if wait <= 0 else max(1, math.ceil(wait))
