"""How a small HTTP server stays bounded: how many connections, and for how long.

Each open connection is in one phase: WAITING for a request (an idle keep-alive, or a new
connection that has sent nothing), READING one (its first byte came; the head or body is
still arriving) or HANDLING it. Waiting and reading connections can be cut: when the table
is full, the oldest connection that has never sent a request makes room first (a scanner's,
a slowloris's), then the oldest idle keep-alive of a real client, then the oldest reading
one; and one that waits or reads past its deadline is cut anyway, however slowly it
trickles. A connection being handled is never cut, so a full table of those refuses
newcomers instead.

Pure bookkeeping on an injectable clock; the server does the cutting.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ConnectionTable", "Phase"]

K = TypeVar("K", bound=Hashable)


class Phase(enum.Enum):
    WAITING = "waiting"
    READING = "reading"
    HANDLING = "handling"


@dataclass
class _Entry:
    phase: Phase
    since: float
    cut: bool = False
    served: bool = False  # a request of it has been handled: a real client's keep-alive


class ConnectionTable(Generic[K]):
    """Open connections of one server, their phase and deadline; thread-safe.

    ``limit`` counts live connections. Cut ones stay listed until their thread ends (so
    `remove` is always called), and at most ``limit`` more of those may exist at once:
    the number of connection threads never exceeds twice the limit.
    """

    def __init__(
        self,
        limit: int,
        *,
        idle_timeout: float,
        request_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if idle_timeout <= 0 or request_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self._clock = clock
        self._entries: dict[K, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Live connections (not counting those already cut)."""
        with self._lock:
            return self._live()

    def admit(self, key: K) -> list[K] | None:
        """Make room for ``key``: the connections to cut for it, or None to refuse it."""
        with self._lock:
            if len(self._entries) >= 2 * self.limit:
                return None
            evicted: list[K] = []
            if self._live() >= self.limit:
                victim = (
                    self._oldest(Phase.WAITING, served=False)
                    or self._oldest(Phase.WAITING)
                    or self._oldest(Phase.READING)
                )
                if victim is None:
                    return None
                self._entries[victim].cut = True
                evicted.append(victim)
            self._entries[key] = _Entry(Phase.WAITING, self._clock())
            return evicted

    def enter(self, key: K, phase: Phase) -> None:
        """``key`` moved to ``phase`` now (its deadline restarts)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.phase is not phase:
                entry.served = entry.served or entry.phase is Phase.HANDLING
                entry.phase, entry.since = phase, self._clock()

    def phase(self, key: K) -> Phase | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.phase if entry is not None else None

    def remove(self, key: K) -> None:
        """The connection is closed and its thread is ending."""
        with self._lock:
            self._entries.pop(key, None)

    def overdue(self) -> list[K]:
        """Connections past their deadline, each returned once (they count as cut from now)."""
        now = self._clock()
        limits = {Phase.WAITING: self.idle_timeout, Phase.READING: self.request_timeout}
        late: list[K] = []
        with self._lock:
            for key, entry in self._entries.items():
                allowed = limits.get(entry.phase)
                if not entry.cut and allowed is not None and now - entry.since >= allowed:
                    entry.cut = True
                    late.append(key)
        return late

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    def _live(self) -> int:
        return sum(not entry.cut for entry in self._entries.values())

    def _oldest(self, phase: Phase, *, served: bool | None = None) -> K | None:
        best: tuple[float, K] | None = None
        for key, entry in self._entries.items():
            if entry.phase is not phase or entry.cut or served not in (None, entry.served):
                continue
            if best is None or entry.since < best[0]:
                best = (entry.since, key)
        return best[1] if best is not None else None
