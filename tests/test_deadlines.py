"""Every call's overall deadline: one watcher thread cuts late calls, never finished ones."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from runway_widget.deadlines import CallDeadline, DeadlinePassed

pytestmark = pytest.mark.timeout(60)


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    return ours, theirs


def test_a_read_blocked_past_the_deadline_is_cut_and_the_call_is_not_trusted():
    ours, theirs = _pair()
    with CallDeadline(0.3) as deadline:
        deadline.hold(ours)
        started = time.monotonic()
        assert ours.recv(10) == b""  # the socket was shut down under the blocked read
        took = time.monotonic() - started
    assert 0.2 < took < 5
    with pytest.raises(DeadlinePassed):
        deadline.confirm()
    theirs.close()


def test_a_finished_call_is_never_cut_later():
    """The pool reuses a finished call's connection: a late expiry would cut the next call."""
    ours, theirs = _pair()
    with CallDeadline(0.2) as deadline:
        deadline.hold(ours)
    time.sleep(0.5)
    theirs.sendall(b"next call")
    assert ours.recv(9) == b"next call"
    assert not deadline.expired
    ours.close()
    theirs.close()


def test_extending_moves_the_cut_later():
    ours, theirs = _pair()
    with CallDeadline(0.2) as deadline:
        deadline.hold(ours)
        deadline.extend(1.0)
        started = time.monotonic()
        assert ours.recv(10) == b""
        took = time.monotonic() - started
    assert took > 0.6
    assert deadline.seconds == 1.0
    theirs.close()


def test_an_earlier_deadline_is_cut_first_even_when_a_long_one_is_waiting():
    long_ours, long_theirs = _pair()
    short_ours, short_theirs = _pair()
    with CallDeadline(30) as patient:
        patient.hold(long_ours)
        with CallDeadline(0.2) as hasty:
            hasty.hold(short_ours)
            started = time.monotonic()
            assert short_ours.recv(10) == b""
            took = time.monotonic() - started
        assert took < 5
        assert not patient.expired
    for sock in (long_ours, long_theirs, short_ours, short_theirs):
        sock.close()


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
