"""Bounded lanes: a full queue refuses at once, work due later holds no worker, stops end."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from runway_widget.gateway.lanes import Lane, LaneFull

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def lane():
    lanes: list[Lane] = []

    def make(workers: int = 1, capacity: int = 10) -> Lane:
        lanes.append(Lane("test-lane", workers, capacity))
        return lanes[-1]

    yield make
    for each in lanes:
        each.close()


def _blocker(lane: Lane) -> tuple[threading.Event, threading.Event]:
    """Occupy one worker until the returned ``release`` is set."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    lane.submit(hold)
    assert started.wait(5)
    return started, release


def test_a_full_queue_refuses_at_once_and_nothing_of_the_refused_work_runs(lane):
    one = lane(workers=1, capacity=2)
    _, release = _blocker(one)
    ran: list[int] = []
    queued = [one.submit(ran.append, i) for i in range(2)]
    with pytest.raises(LaneFull):
        one.submit(ran.append, 99)
    release.set()
    for future in queued:
        future.result(5)
    assert ran == [0, 1]


def test_work_due_later_holds_no_worker_meanwhile(lane):
    one = lane(workers=1)
    later = one.submit_after(60.0, lambda: "late")
    assert one.submit(lambda: "now").result(5) == "now"  # the only worker was free
    assert not later.done() and one.waiting == 1


def test_work_runs_soonest_due_first_then_in_order(lane):
    one = lane(workers=1)
    _, release = _blocker(one)
    order: list[str] = []
    futures = [
        one.submit_after(0.2, order.append, "retry"),
        one.submit(order.append, "a"),
        one.submit(order.append, "b"),
    ]
    release.set()
    for future in futures:
        future.result(5)
    assert order == ["a", "b", "retry"]


def test_close_cancels_what_waits_and_does_not_wait_for_a_stuck_call(lane, caplog):
    one = lane(workers=1)
    _, release = _blocker(one)
    waiting = one.submit(lambda: None)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="runway_widget"):
        one.close(grace=0.2)
    assert "1 call(s) still running" in caplog.text
    assert time.monotonic() - started < 3  # a stuck call is left to its own deadline
    assert waiting.cancelled()
    with pytest.raises(LaneFull):
        one.submit(lambda: None)
    release.set()


def test_an_awaited_call_in_a_full_lane_is_refused_on_the_event_loop(lane):
    one = lane(workers=1, capacity=1)
    _, release = _blocker(one)
    one.submit(lambda: None)

    async def main() -> None:
        with pytest.raises(LaneFull):
            await one.run(lambda: None)

    asyncio.run(main())
    release.set()


def test_an_awaited_call_returns_its_result_or_raises_its_error(lane):
    one = lane(workers=2)

    def fail() -> None:
        raise ValueError("no")

    async def main() -> None:
        assert await one.run(lambda x: x * 2, 21) == 42
        with pytest.raises(ValueError, match="no"):
            await one.run(fail)

    asyncio.run(main())


def test_closing_an_idle_lane_says_nothing_is_left_running(lane, caplog):
    idle = lane(workers=4)
    assert idle.submit(lambda: "done").result(5) == "done"
    with caplog.at_level(logging.INFO, logger="runway_widget"):
        idle.close()
    assert "still running" not in caplog.text
