"""How an HTTP server stays bounded: how many connections, for how long, and whose.

Each open connection is in one phase: WAITING for a request (an idle keep-alive, or a new
connection that has sent nothing), READING one (its first byte came; the head or body is
still arriving) or HANDLING it. Waiting and reading connections can be cut: when the table
is full, the oldest connection that has never sent a request makes room first (a scanner's,
a slowloris's), then the oldest idle keep-alive of a real client, then the oldest reading
one; and one that waits or reads past its deadline is cut anyway, however slowly it
trickles. A connection that has never sent a request has a shorter deadline of its own
(``fresh_timeout``) than a keep-alive that has. A connection being handled is never cut, so
a full table of those refuses newcomers instead.

Connections may name their owner (the client's address). Then slots are shared out: the
room is made among the connections of the owner holding the most, so one address that
opens every slot only ever competes with itself; and with ``per_owner`` an owner's new
connection beyond that many replaces one of its own, or is refused if all of them are busy.

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


# who makes room first: strangers that never sent a request, idle keep-alives, half-sent ones
_CUT_ORDER = ((Phase.WAITING, False), (Phase.WAITING, True), (Phase.READING, None))
_Bucket = tuple[Phase, bool]  # a phase, and whether the connection has had a request handled


@dataclass
class _Entry:
    phase: Phase
    since: float
    owner: Hashable = None
    cut: bool = False
    served: bool = False  # a request of it has been handled: a real client's keep-alive

    @property
    def bucket(self) -> _Bucket:
        return self.phase, self.served


class _Holding(Generic[K]):
    """One owner's live connections, by phase: each bucket oldest first (entering a phase
    puts a connection at the end of its bucket, so every choice below is made at a head)."""

    def __init__(self) -> None:
        self.buckets: dict[_Bucket, dict[K, None]] = {}
        self.count = 0

    def add(self, key: K, bucket: _Bucket) -> None:
        self.buckets.setdefault(bucket, {})[key] = None
        self.count += 1

    def discard(self, key: K, bucket: _Bucket) -> None:
        keys = self.buckets.get(bucket)
        if keys is not None and keys.pop(key, False) is None:
            self.count -= 1

    def oldest(self, bucket: _Bucket) -> K | None:
        return next(iter(self.buckets.get(bucket) or ()), None)


class ConnectionTable(Generic[K]):
    """Open connections of one server, their phase, deadline and owner; thread-safe.

    ``limit`` counts live connections. Cut ones stay listed until their thread ends (so
    `remove` is always called), and at most ``limit`` more of those may exist at once:
    the number of connection threads never exceeds twice the limit. Every step takes
    constant time, however many connections an owner holds (one that opens hundreds a
    second must not make the server slow for everyone else).
    """

    def __init__(
        self,
        limit: int,
        *,
        idle_timeout: float,
        request_timeout: float,
        fresh_timeout: float | None = None,
        per_owner: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or (per_owner is not None and per_owner < 1):
            raise ValueError("limits must be at least 1")
        fresh_timeout = idle_timeout if fresh_timeout is None else fresh_timeout
        if min(idle_timeout, request_timeout, fresh_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        self.limit = limit
        self.per_owner = per_owner
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.fresh_timeout = fresh_timeout
        self._clock = clock
        self._entries: dict[K, _Entry] = {}
        self._owned: dict[Hashable, _Holding[K]] = {}  # each owner's live connections
        self._live = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Live connections (not counting those already cut)."""
        with self._lock:
            return self._live

    def held_by(self, owner: Hashable) -> int:
        """How many live connections ``owner`` holds."""
        with self._lock:
            return self._holds(owner)

    def admit(self, key: K, owner: Hashable = None, *, capped: bool = True) -> list[K] | None:
        """Make room for ``key`` of ``owner``: the connections to cut for it, or None to refuse.

        ``capped=False`` exempts this connection from ``per_owner`` (a trusted proxy's,
        which carries many clients), not from the table's ``limit``.
        """
        with self._lock:
            if len(self._entries) >= 2 * self.limit:
                return None
            if capped and self.per_owner is not None and self._holds(owner) >= self.per_owner:
                victim = self._victim(owner)
            elif self._live >= self.limit:
                victim = self._fairest_victim()
            else:
                self._add(key, owner)
                return []
            if victim is None:
                return None
            self._cut(victim)
            self._add(key, owner)
            return [victim]

    def enter(self, key: K, phase: Phase) -> None:
        """``key`` moved to ``phase`` now (its deadline restarts)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.phase is phase:
                return
            holding = None if entry.cut else self._owned.get(entry.owner)
            if holding is not None:
                holding.discard(key, entry.bucket)
            entry.served = entry.served or entry.phase is Phase.HANDLING
            entry.phase, entry.since = phase, self._clock()
            if holding is not None:
                holding.add(key, entry.bucket)

    def phase(self, key: K) -> Phase | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.phase if entry is not None else None

    def remove(self, key: K) -> None:
        """The connection is closed and its thread is ending."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None and not entry.cut:
                self._release(key, entry)

    def overdue(self) -> list[K]:
        """Connections past their deadline, each returned once (they count as cut from now)."""
        now = self._clock()
        late: list[K] = []
        with self._lock:
            for holding in self._owned.values():
                for bucket, keys in holding.buckets.items():
                    allowed = self._allowed(*bucket)
                    for key in keys:  # oldest first: stop at the first still in time
                        if allowed is None or now - self._entries[key].since < allowed:
                            break
                        late.append(key)
            for key in late:
                self._cut(key)
        return late

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    def _allowed(self, phase: Phase, served: bool) -> float | None:
        if phase is Phase.READING:
            return self.request_timeout
        if phase is Phase.WAITING:
            return self.idle_timeout if served else self.fresh_timeout
        return None

    def _add(self, key: K, owner: Hashable) -> None:
        entry = _Entry(Phase.WAITING, self._clock(), owner)
        self._entries[key] = entry
        holding = self._owned.get(owner)
        if holding is None:
            holding = self._owned[owner] = _Holding()
        holding.add(key, entry.bucket)
        self._live += 1

    def _cut(self, key: K) -> None:
        entry = self._entries[key]
        entry.cut = True
        self._release(key, entry)

    def _release(self, key: K, entry: _Entry) -> None:
        holding = self._owned.get(entry.owner)
        if holding is not None:
            holding.discard(key, entry.bucket)
            self._live -= 1
            if not holding.count:
                del self._owned[entry.owner]

    def _fairest_victim(self) -> K | None:
        """A connection of the owner holding the most that can be cut (then the next owner)."""
        by_size = sorted(self._owned, key=lambda owner: self._owned[owner].count, reverse=True)
        for owner in by_size:
            victim = self._victim(owner)
            if victim is not None:
                return victim
        return None

    def _victim(self, owner: Hashable) -> K | None:
        """``owner``'s oldest never-served waiting connection, else idle one, else reading."""
        holding = self._owned.get(owner)
        if holding is None:
            return None
        for phase, served in _CUT_ORDER:
            kinds = (False, True) if served is None else (served,)
            heads = [key for key in map(holding.oldest, ((phase, s) for s in kinds)) if key]
            if heads:
                return min(heads, key=lambda key: self._entries[key].since)
        return None

    def _holds(self, owner: Hashable) -> int:
        holding = self._owned.get(owner)
        return holding.count if holding is not None else 0
