"""Every call's overall deadline: one watcher thread cuts late calls, never finished ones."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from runway_widget._http.deadlines import CallDeadline, DeadlinePassed
from tests.fake_clock import FakeClock

pytestmark = pytest.mark.timeout(60)

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def connected() -> Iterator[Callable[[], Pair]]:
    """Connected socket pairs (ours, theirs), closed after the test."""
    opened: list[socket.socket] = []

    def pair() -> Pair:
        ours, theirs = socket.socketpair()
        ours.settimeout(10)
        opened.extend((ours, theirs))
        return ours, theirs

    yield pair
    for sock in opened:
        sock.close()


def _seconds_until_cut(sock: socket.socket) -> float:
    """How long a read blocked on ``sock`` lasts before its socket is shut down under it."""
    started = time.monotonic()
    assert sock.recv(10) == b""
    return time.monotonic() - started


def test_a_read_blocked_past_the_deadline_is_cut_and_the_call_is_not_trusted(connected):
    ours, _ = connected()
    with CallDeadline(0.3) as deadline:
        deadline.hold(ours)
        took = _seconds_until_cut(ours)
    assert 0.2 < took < 5
    with pytest.raises(DeadlinePassed):
        deadline.confirm()


def test_a_finished_call_is_never_cut_later(connected):
    """The pool reuses a finished call's connection: a late expiry would cut the next call."""
    ours, theirs = connected()
    clock = FakeClock()
    with CallDeadline(0.2, clock=clock) as deadline:
        deadline.hold(ours)
    clock.advance(0.5)
    deadline.expire_if_due()  # what the watcher does once the call's time is up
    theirs.sendall(b"next call")
    assert ours.recv(9) == b"next call"
    assert not deadline.expired


def test_a_running_call_past_its_time_on_its_clock_is_cut(connected):
    ours, _ = connected()
    clock = FakeClock()
    with CallDeadline(0.2, clock=clock) as deadline:
        deadline.hold(ours)
        deadline.expire_if_due()
        assert not deadline.expired  # not yet due on its clock
        clock.advance(0.2)
        deadline.expire_if_due()
        assert ours.recv(10) == b""
        with pytest.raises(DeadlinePassed):
            deadline.check()
    assert deadline.expired


def test_extending_moves_the_cut_later(connected):
    ours, _ = connected()
    with CallDeadline(0.2) as deadline:
        deadline.hold(ours)
        deadline.extend(1.0)
        took = _seconds_until_cut(ours)
    assert took > 0.6
    assert deadline.seconds == 1.0


def test_an_earlier_deadline_is_cut_first_even_when_a_long_one_is_waiting(connected):
    patient_socket, _ = connected()
    hasty_socket, _ = connected()
    with CallDeadline(30) as patient:
        patient.hold(patient_socket)
        with CallDeadline(0.2) as hasty:
            hasty.hold(hasty_socket)
            took = _seconds_until_cut(hasty_socket)
        assert took < 5
        assert not patient.expired


def test_many_calls_share_one_watcher_thread():
    def calls() -> None:
        for _ in range(50):
            with CallDeadline(5):
                pass

    workers = [threading.Thread(target=calls) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    watchers = [t for t in threading.enumerate() if t.name.startswith("runway-widget-deadline")]
    assert len(watchers) == 1
