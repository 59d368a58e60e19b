"""Per-caller request rates: one token bucket per participant, and the guard on ``/join``.

Where the buckets live (`Buckets`) depends on how many processes serve the room. One
process (SQLite) keeps them in memory (`MemoryBuckets`). Replicas sharing PostgreSQL keep
them in the database (`db.buckets.SharedBuckets`), so N replicas allow together what one
would, and a guesser gains nothing by spreading guesses over them. Each replica then
also keeps a bucket of its own in front (`RateLimiter`): it counts only what this replica
let through, so when it is empty the shared one is too, and a flood is refused without a
database trip. A participant's requests take tokens from the shared bucket a few at a time
(``lease``): a replica uses them up before asking again, so a participant polling once a
second costs one database trip every few requests, and all replicas together let through
at most ``burst`` plus ``lease`` per replica beyond the rate.

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
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, Protocol

__all__ = ["Buckets", "JoinGuard", "KeyedLocks", "MemoryBuckets", "RateLimiter", "Runner"]

MAX_KEYS = 10_000  # buckets kept; the least recently used go first (a full bucket again)
# (rate per second, burst) of the join guard's buckets
JOIN_ATTEMPTS = (2.0, 60)  # per address, right or wrong: a room behind one NAT joins at once
WRONG_JOINS = (1 / 120, 10)  # per address: ten wrong codes, then one every two minutes
WRONG_JOINS_ALL = (1.0, 60)  # all addresses together: many addresses guess no faster
EVERYONE = "*"

Runner = Callable[..., Awaitable[Any]]  # runs a blocking call off the event loop


class Buckets(Protocol):
    """Token buckets by key; each call names the bucket's ``rate`` and ``burst``."""

    shared: bool  # True: the buckets are the room's, and each call blocks on the network

    def take(self, key: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        """Up to ``want`` whole tokens: (how many were taken, tokens left)."""
        ...

    def give(self, key: str, rate: float, burst: int, tokens: float) -> None:
        """Give back ``tokens`` that were taken but not spent (never above ``burst``)."""
        ...


class MemoryBuckets:
    """This process's buckets, at most `MAX_KEYS` of them; time is injectable."""

    shared = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def take(self, key: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        with self._lock:
            tokens = self._refilled(key, rate, burst)
            taken = min(want, int(tokens))
            self._buckets[key] = (tokens - taken, self._clock())
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
        return taken, tokens - taken

    def give(self, key: str, rate: float, burst: int, tokens: float) -> None:
        with self._lock:
            if key in self._buckets:
                refilled = min(float(burst), self._refilled(key, rate, burst) + tokens)
                self._buckets[key] = (refilled, self._clock())

    def _refilled(self, key: str, rate: float, burst: int) -> float:
        """The bucket's tokens now (moved to the most recently used end)."""
        now = self._clock()
        tokens, when = self._buckets.pop(key, (float(burst), now))
        return min(float(burst), tokens + max(0.0, now - when) * rate)


class KeyedLocks:
    """One asyncio lock a key, kept only while someone holds or waits for it (event loop)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def held(self, key: str) -> AsyncIterator[None]:
        lock, waiting = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._locks[key]
            if waiting == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, waiting - 1)


class RateLimiter:
    """``rate`` requests a second per key, bursts up to ``burst``, in ``buckets``.

    With shared buckets, ``lease`` tokens are taken at a time and ``run`` runs the calls off
    the event loop; this replica's own bucket refuses first what the room's would refuse, and
    a key's requests arriving together wait for one take instead of each taking a lease.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        name: str = "requests",
        buckets: Buckets | None = None,
        lease: int = 1,
        run: Runner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or burst < 1 or lease < 1:
            raise ValueError("need rate > 0, burst >= 1 and lease >= 1")
        self.rate, self.burst, self.name = rate, burst, name
        self._buckets = buckets or MemoryBuckets(clock)
        shared = self._buckets.shared
        self._own = MemoryBuckets(clock) if shared else None
        self._lease = min(lease, burst) if shared else 1
        self._leased: OrderedDict[str, int] = OrderedDict()  # on the event loop only
        self._run = run if shared and run is not None else _inline
        self._taking = KeyedLocks()

    async def retry_after(self, key: Hashable) -> int:
        """0 when the request may go ahead; else whole seconds to wait (for ``Retry-After``)."""
        name = f"{self.name}:{key}"
        if self._own is not None:
            taken, left = self._own.take(name, self.rate, self.burst, 1)
            if not taken:
                return self._seconds(left)
        async with self._taking.held(name):
            if self._use_lease(name):
                return 0
            taken, left = await self._run(
                self._buckets.take, name, self.rate, self.burst, self._lease
            )
            self._keep_lease(name, taken - 1)
        if taken:
            return 0
        if self._own is not None:
            self._own.give(name, self.rate, self.burst, 1.0)  # it was not let through
        return self._seconds(left)

    async def refund(self, key: Hashable, tokens: float = 1.0) -> None:
        """Give ``key`` back ``tokens`` it took (up to its burst)."""
        name = f"{self.name}:{key}"
        if self._own is not None:
            self._own.give(name, self.rate, self.burst, tokens)
        await self._run(self._buckets.give, name, self.rate, self.burst, tokens)

    def _use_lease(self, name: str) -> bool:
        left = self._leased.pop(name, 0)
        if left > 1:
            self._leased[name] = left - 1
        return left > 0

    def _keep_lease(self, name: str, tokens: int) -> None:
        if tokens > 0:
            self._leased[name] = self._leased.pop(name, 0) + tokens
            while len(self._leased) > MAX_KEYS:
                self._leased.popitem(last=False)

    def _seconds(self, tokens_left: float) -> int:
        return _whole_seconds((1.0 - tokens_left) / self.rate)


class JoinGuard:
    """Who may try a join code now, so that a short code cannot be guessed.

    Every attempt counts against its address (`JOIN_ATTEMPTS`, generous: a whole room may
    share one address). A code is checked only with a guess taken from the address and from
    everyone (`WRONG_JOINS`, `WRONG_JOINS_ALL`); with none left the attempt is refused
    unchecked, so even the right code cannot slip through a flood. A wrong code leaves the
    guesses spent; a right one gives them back and one more to the address, so a room's
    typos are paid for by its joins (each takes a seat). The checks of one address take
    turns in a process (`turn`); the guesses themselves are taken atomically, so replicas
    sharing the buckets hand out no more of them than one process would.
    """

    def __init__(
        self,
        *,
        buckets: Buckets | None = None,
        run: Runner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        shared = buckets or MemoryBuckets(clock)

        def limiter(name: str, rate: float, burst: int) -> RateLimiter:
            return RateLimiter(rate, burst, name=name, buckets=shared, run=run, clock=clock)

        self._attempts = limiter("join", *JOIN_ATTEMPTS)
        self._wrong = limiter("join-wrong", *WRONG_JOINS)
        self._wrong_all = limiter("join-wrong-all", *WRONG_JOINS_ALL)
        self._turns = KeyedLocks()

    async def attempt(self, address: str) -> int:
        """0 when ``address`` may send a join now; else whole seconds to wait."""
        return await self._attempts.retry_after(address)

    def turn(self, address: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait for ``address``'s previous check to end (take `guess` inside)."""
        return self._turns.held(address)

    async def guess(self, address: str) -> int:
        """Take one guess: 0 to check the code now; else whole seconds to wait, unchecked."""
        wait = await self._wrong.retry_after(address)
        if wait:
            return wait
        everyone = await self._wrong_all.retry_after(EVERYONE)
        if everyone:
            await self._wrong.refund(address)
        return everyone

    async def joined(self, address: str) -> None:
        """The code was right: the guesses come back, with one more for the room's typos."""
        await self._wrong.refund(address, 2.0)
        await self._wrong_all.refund(EVERYONE)


async def _inline(call: Callable[..., Any], *args: Any) -> Any:
    return call(*args)


def _whole_seconds(wait: float) -> int:
    return 0 if wait <= 0 else max(1, math.ceil(wait))
