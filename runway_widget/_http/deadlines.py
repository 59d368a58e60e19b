"""Every HTTP call's overall deadline, and the one thread that enforces them all.

A per-read ``timeout`` alone lets a server that sends one byte a second hold a call for
ever. So each call runs under a `CallDeadline`: reads check it between chunks, and when it
passes, the sockets the call opened are shut down, which ends a read blocked anywhere (even
inside the status line or the headers). One daemon thread (`_Expiries`) watches the
deadline of every running call that holds a socket: a thread per call costs more than a
whole loopback call does, and a call in memory has nothing to cut.

A deadline reads its own ``clock`` (``time.monotonic`` unless given), so a call over an
in-memory transport can be timed on a test's clock.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable

from urllib3.connection import HTTPConnection

__all__ = ["CallDeadline", "DeadlinePassed", "current_deadline"]

_current = threading.local()  # the CallDeadline of the call running on this thread


class DeadlinePassed(Exception):
    """The call's overall deadline passed before its reply was complete."""

    def __init__(self, seconds: float, *, before_sending: bool = False) -> None:
        super().__init__(f"no complete answer within the {seconds:g}s deadline")
        self.seconds = seconds
        self.before_sending = before_sending  # the deadline passed before a request went out


class CallDeadline:
    """One call's overall deadline; on expiry, the sockets the call uses are shut down."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.at = self.started + seconds
        self.expired = False
        self._running = False
        self._watched = False  # handed to the watcher thread (once it held a socket)
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []
        self._sockets: list[socket.socket] = []

    @property
    def running(self) -> bool:
        """Between entering and leaving its ``with`` block."""
        return self._running

    def remaining(self) -> float:
        return max(0.0, self.at - self._clock())

    def elapsed(self) -> float:
        return self._clock() - self.started

    def check(self) -> None:
        """Raise `DeadlinePassed` once the deadline is behind us."""
        if self.expired or self._clock() >= self.at:
            raise DeadlinePassed(self.seconds)

    def confirm(self) -> None:
        """Raise `DeadlinePassed` if the deadline cut the call's sockets at any point.

        A reply cut off inside its headers can look complete to the HTTP parser (the
        headers simply end), so a call that "succeeded" after the cut is not trusted.
        """
        if self.expired:
            raise DeadlinePassed(self.seconds)

    def extend(self, seconds: float) -> None:
        """Move the deadline to ``seconds`` after the call's start (never earlier)."""
        with self._lock:
            if seconds <= self.seconds or self.expired:
                return
            self.seconds = seconds
            self.at = self.started + seconds
            watched = self._running and self._watched
        if watched:
            _EXPIRIES.watch(self)

    def watch(self, connection: HTTPConnection) -> None:
        """Called by a connection before the call sends on it."""
        with self._lock:
            if self.expired or self._clock() >= self.at:
                raise DeadlinePassed(self.seconds, before_sending=True)
            self._connections.append(connection)
        self._hand_to_watcher()

    def hold(self, sock: socket.socket | None) -> None:
        """Called with the socket a request went out on: the reply is read from it even
        after its connection lets go of it (``Connection: close``)."""
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)
        self._hand_to_watcher()

    def _hand_to_watcher(self) -> None:
        with self._lock:
            first, self._watched = not self._watched, True
        if first:
            _EXPIRIES.watch(self)

    def __enter__(self) -> CallDeadline:
        self._outer = getattr(_current, "deadline", None)
        _current.deadline = self
        self._running = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        # under the lock: once this returns, no expiry touches a socket the pool may reuse
        with self._lock:
            self._running = False
        _current.deadline = self._outer

    def expire_if_due(self) -> None:
        """Shut the call's sockets if it is still running and its deadline has passed."""
        with self._lock:
            if not self._running or self.expired or self._clock() < self.at:
                return
            self.expired = True
            for sock in [*self._sockets, *(getattr(c, "sock", None) for c in self._connections)]:
                if sock is not None:
                    _shut(sock)


def current_deadline() -> CallDeadline | None:
    return getattr(_current, "deadline", None)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Expiries:
    """Running calls' deadlines in time order, expired by one daemon thread.

    Finished calls are not searched for and removed; the thread drops them once they reach
    the front, so it wakes for calls still running when it went to sleep, not for every call.
    """

    def __init__(self) -> None:
        self._wake = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, CallDeadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: CallDeadline) -> None:
        due = time.monotonic() + deadline.remaining()  # on this thread's clock
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():  # first call, or a fork
                self._thread = threading.Thread(
                    target=self._run, name="runway-widget-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    while self._heap and not self._heap[0][2].running:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, deadline = heapq.heappop(self._heap)
            deadline.expire_if_due()


_EXPIRIES = _Expiries()
