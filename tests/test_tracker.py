"""The background poller: batching, faults, dedup, lifecycle and waiting.

The tracker's thread runs for real, on the fake clock (its sleeps wait for the test to move
time) against the fake service in memory, so exact reply sequences and minutes of job time
take milliseconds. One test runs real jobs on the demo backend end to end.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import defaultdict
from collections.abc import Callable

import pytest
from fake_api import Reply, error
from waiting import wait_for

from runway_widget.errors import TaskFailedError, TaskTimeoutError
from runway_widget.models import Task
from runway_widget.tracking.tracker import THREAD_NAME, TaskTracker

FINISHED = {"status": "finished", "percentage": 100, "video_url": "https://cdn.example/v.mp4"}
RUNNING = {"status": "processing", "percentage": "10"}


class Recorder:
    """Collects every callback, per task."""

    def __init__(self) -> None:
        self.updates: dict[str, list[Task]] = defaultdict(list)
        self.progress: dict[str, list[float]] = defaultdict(list)

    def on_update(self, task: Task) -> None:
        self.updates[task.task_id].append(task)

    def progress_for(self, task_id: str) -> Callable[[float], None]:
        return self.progress[task_id].append


class Feed:
    """Pushed updates in memory (what a webhook receiver hands the tracker)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Task], object]] = []

    def subscribe(self, callback: Callable[[Task], object]) -> Callable[[], None]:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def push(self, task_id: str, **state: object) -> None:
        task = Task.from_json({"task_id": task_id, "task_type": "runway", **state})
        for callback in list(self.callbacks):
            callback(task)


def poller_threads(started_after: set[threading.Thread]) -> list[threading.Thread]:
    """Poller threads alive now that were not among ``started_after`` (another test's
    gateway, alive in this process for its module, has a poller of its own)."""
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t not in started_after]


def assert_never_backwards(updates: list[Task]) -> None:
    order = {"staged": 0, "starting": 1, "processing": 2}
    for before, after in itertools.pairwise(updates):
        assert not before.is_done, f"an update came after the terminal one: {updates}"
        assert not after.same_progress(before), f"a duplicate was delivered: {updates}"
        if after.is_done:
            continue
        assert order.get(after.status, 2) >= order.get(before.status, 2), updates
        if before.percentage is not None and after.percentage is not None:
            assert after.percentage >= before.percentage, updates


@pytest.fixture
def api_client(client_for, api):
    return client_for(api, requests_per_second=50)


@pytest.fixture
def tracker_for(clock):
    """Build trackers on the fake clock, always stopped at the end of the test."""
    made: list[TaskTracker] = []

    def build(client, **kwargs) -> TaskTracker:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("wait", clock.wait)
        tracker = TaskTracker(client, **kwargs)
        made.append(tracker)
        return tracker

    yield build
    for tracker in made:
        tracker.stop()


def submit(client, count: int, prompt: str = "a lighthouse in a storm") -> list[str]:
    return [client.imagine(prompt=prompt, generation_type="text2video") for _ in range(count)]


# -- real jobs, end to end ------------------------------------------------------------------------


@pytest.fixture
def demo_server(clock):
    """The demo backend over HTTP, its 20 s jobs on the fake clock (the clip really rendered)."""
    from runway_widget.demo import DemoServer

    with DemoServer(job_seconds=20, clock=clock) as server:
        yield server


def test_thirty_demo_tasks_all_reach_their_callbacks_in_batched_requests(demo_server,
                                                                       demo_client, clock):
    ids = submit(demo_client, 30)
    recorder = Recorder()
    tracker = TaskTracker(demo_client, clock=clock, wait=clock.wait)
    try:
        for task_id in ids:
            tracker.track(task_id, on_update=recorder.on_update)
        with clock.driving():
            finished = [tracker.wait(task_id, timeout=60) for task_id in ids]
    finally:
        tracker.stop()
    assert all(task.is_finished and task.video_url for task in finished)
    for task_id in ids:
        updates = recorder.updates[task_id]
        assert updates[-1].is_finished
        assert_never_backwards(updates)
    fetches = demo_server.stats.get("/fetch", 0) + demo_server.stats.get("/fetch-many", 0)
    assert demo_server.stats.get("/fetch-many", 0) > 0
    assert fetches < sum(len(recorder.updates[task_id]) for task_id in ids) / 3
    assert demo_client.store.get(ids[0]).status == "finished"


# -- the fake service, on the fake clock ----------------------------------------------------------


def test_progress_moves_between_polls_and_never_goes_back(api, api_client, tracker_for, clock):
    api.add_job("t-1", seconds=40)
    recorder = Recorder()
    tracker = tracker_for(api_client)
    handle = tracker.track("t-1", on_update=recorder.on_update,
                           on_progress=recorder.progress_for("t-1"))
    clock.run_until(lambda: handle.done)
    values = recorder.progress["t-1"]
    assert values == sorted(values)
    assert values[-1] == 100.0
    assert all(0 <= v <= 99 for v in values[:-1])
    shown = {round(v) for v in values[:-1]}
    polled = {t.percentage for t in recorder.updates["t-1"] if t.percentage is not None}
    assert shown - polled, "the bar only moved when a poll came back"
    assert api.count("/fetch") < 15  # the fitted line, not a poll per half second


def test_faults_delay_but_never_lose_a_task(api, api_client, tracker_for, clock, caplog):
    ids = [f"t-{i}" for i in range(12)]
    for number, task_id in enumerate(ids):
        api.add_job(task_id, seconds=20 + 3 * number)
    api.script(
        "/fetch-many",
        error(500, "boom"),
        Reply(drop=True),
        Reply(body="<html>Bad gateway</html>"),
        error(429, "slow down", **{"Retry-After": "0.5"}),
        error(503, "busy"),
    )
    recorder = Recorder()
    tracker = tracker_for(api_client, min_interval=0.1)
    handles = [tracker.track(task_id, on_update=recorder.on_update) for task_id in ids]
    clock.run_until(lambda: all(h.done for h in handles))
    assert all(tracker.latest(task_id).is_finished for task_id in ids)
    for task_id in ids:
        assert_never_backwards(recorder.updates[task_id])
    assert caplog.text.count("polling paused") == 5  # every fault did hit


def test_a_failed_job_raises_with_its_message(api, api_client, tracker_for, clock):
    api.add_task("t-1", RUNNING, {"status": "failed", "message": "blocked by moderation"})
    tracker = tracker_for(api_client)
    with clock.driving(), pytest.raises(TaskFailedError) as caught:
        tracker.wait("t-1", timeout=30)
    assert caught.value.task.is_failed
    assert caught.value.task.message == "blocked by moderation"
    assert api_client.store.get("t-1").status == "failed"


def test_wait_times_out_with_the_last_state_and_the_task_goes_on(api, api_client, tracker_for,
                                                                  clock):
    api.add_task("t-1", RUNNING, FINISHED)
    tracker = tracker_for(api_client)
    with pytest.raises(TaskTimeoutError) as caught:
        tracker.wait("t-1", timeout=0.01)  # the fake clock stands still: nothing came yet
    assert caught.value.task_id == "t-1" and caught.value.task is None
    with clock.driving():
        assert tracker.wait("t-1", timeout=30).is_finished
    assert tracker.wait("t-1", timeout=0).is_finished  # settled: no waiting at all


def test_wait_async_shares_the_outcome(api, api_client, tracker_for, clock):
    api.add_task("ok", RUNNING, FINISHED)
    api.add_task("bad", RUNNING, {"status": "failed", "message": "no"})
    tracker = tracker_for(api_client)

    async def main() -> Task:
        with pytest.raises(TaskTimeoutError):
            await tracker.wait_async("ok", timeout=0.01)
        with clock.driving():
            finished = await tracker.wait_async("ok", timeout=30)
            with pytest.raises(TaskFailedError):
                await tracker.wait_async("bad", timeout=30)
        return finished

    assert asyncio.run(main()).is_finished


def test_sync_wait_works_inside_a_running_event_loop(api, api_client, tracker_for, clock):
    api.add_task("t-1", RUNNING, FINISHED)
    tracker = tracker_for(api_client)

    async def main() -> Task:
        await asyncio.sleep(0)
        return tracker.wait("t-1", timeout=30)

    with clock.driving():
        assert asyncio.run(main()).is_finished


def test_stop_is_immediate_leaves_no_thread_and_tracking_restarts(api, api_client, tracker_for,
                                                                  clock):
    before = set(threading.enumerate())
    for task_id in ("a", "b", "c"):
        api.add_task(task_id, RUNNING, FINISHED)
    tracker = tracker_for(api_client)
    for task_id in ("a", "b", "c"):
        tracker.track(task_id)
    assert len(poller_threads(before)) == 1

    waiter_error: list[BaseException] = []

    def waiter() -> None:
        try:
            tracker.wait("a")
        except BaseException as exc:
            waiter_error.append(exc)

    blocked = threading.Thread(target=waiter)
    blocked.start()
    wait_for(lambda: tracker._board.get("a").waiters, "the waiter to block")
    tracker.stop()
    blocked.join(5)
    assert not blocked.is_alive()
    assert isinstance(waiter_error[0], TaskTimeoutError)
    assert poller_threads(before) == []
    assert [t.name for t in threading.enumerate()
            if t not in before and t.name.startswith("runway-widget")] == []  # nothing of ours

    with clock.driving():
        assert tracker.wait("b", timeout=30).is_finished
    wait_for(lambda: poller_threads(before) == [], "the idle thread to end by itself")


def test_callback_exceptions_do_not_stop_polling(api, api_client, tracker_for, clock, caplog):
    recorder = Recorder()

    def broken(task: Task) -> None:
        raise RuntimeError("a broken view")

    tracker = tracker_for(api_client)
    handles = []
    for task_id in ("a", "b"):
        api.add_job(task_id, seconds=10)
        tracker.track(task_id, on_update=broken, on_progress=lambda value: 1 / 0)
        handles.append(tracker.track(task_id, on_update=recorder.on_update))
    clock.run_until(lambda: all(h.done for h in handles))
    assert all(recorder.updates[task_id][-1].is_finished for task_id in ("a", "b"))
    assert "a broken view" in caplog.text and "ZeroDivisionError" in caplog.text


def test_stale_and_duplicate_replies_never_reach_callbacks(api, api_client, tracker_for, clock):
    api.add_task(
        "t-1",
        {"status": "processing", "percentage": "40"},
        {"status": "processing", "percentage": "40"},
        {"status": "processing", "percentage": "30"},
        {"status": "starting"},
        {"status": "processing", "percentage": "60"},
        FINISHED,
    )
    recorder = Recorder()
    tracker = tracker_for(api_client, min_interval=0.1)
    handle = tracker.track("t-1", on_update=recorder.on_update)
    clock.run_until(lambda: handle.done)
    assert api.count("/fetch") == 6
    delivered = [(t.status, t.percentage) for t in recorder.updates["t-1"]]
    assert delivered == [("processing", 40), ("processing", 60), ("finished", 100)]


def test_omitted_and_unknown_ids_are_rechecked_then_failed_clearly(api, api_client, tracker_for,
                                                                   clock):
    api.add_task("known", RUNNING, FINISHED)
    tracker = tracker_for(api_client, min_interval=0.1)
    known, ghost = tracker.track("known"), tracker.track("ghost")
    clock.run_until(lambda: known.done and ghost.done)
    assert known.task.is_finished
    with pytest.raises(TaskFailedError) as caught:
        tracker.wait("ghost", timeout=0)
    assert "does not know task ghost" in str(caught.value)
    assert "not found 4 times in a row" in str(caught.value)
    single_checks = [s for s in api.requests("/fetch") if s.json == {"task_id": "ghost"}]
    assert len(single_checks) == 4
    assert api.count("/fetch-many") >= 1


def test_errors_and_rate_limits_back_off_and_recover(api, api_client, tracker_for, clock):
    api.add_task("t-1", RUNNING, FINISHED)
    api.script(
        "/fetch",
        error(429, "Too many requests", **{"Retry-After": "1"}),
        error(503, "busy"),
        Reply(200, body="<html>not json</html>"),
        Reply(drop=True),
        error(500, "oops"),
    )
    tracker = tracker_for(api_client, min_interval=0.1)
    handle = tracker.track("t-1")
    clock.run_until(lambda: handle.done)
    assert handle.task.is_finished
    arrivals = [s.at for s in api.requests("/fetch")]
    assert len(arrivals) == 7
    assert arrivals[1] - arrivals[0] >= 1.0, "Retry-After was not honoured"
    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:6])]
    assert all(gap > 0 for gap in gaps), "an error did not pause polling"


def test_requests_stay_under_the_client_budget(api, client_for, tracker_for, clock):
    for i in range(60):
        api.add_task(f"t-{i}", RUNNING)
    client = client_for(api, requests_per_second=4)
    tracker = tracker_for(client, min_interval=0.1, max_interval=1.0)
    for i in range(60):
        tracker.track(f"t-{i}")
    clock.run_for(3)
    tracker.refresh()
    clock.run_for(10)
    arrivals = sorted(s.at for s in api.requests())
    assert len(arrivals) > 20  # it did poll, all along
    # A 4/s bucket holding 2 tokens allows at most 2 + 4 * span requests in any span.
    for i, first in enumerate(arrivals):
        for j in range(i, len(arrivals)):
            assert j - i + 1 <= 2 + 4 * (arrivals[j] - first) + 1e-6, arrivals
    assert all(len(s.json["task_ids"]) <= 20 for s in api.requests("/fetch-many"))


def test_a_pushed_update_reaches_callbacks_once_and_polls_become_rare(api, api_client,
                                                                      tracker_for, clock):
    api.add_task("t-1", RUNNING)
    recorder = Recorder()
    feed = Feed()
    tracker = tracker_for(api_client, webhooks=feed)
    tracker.track("t-1", on_update=recorder.on_update)
    clock.run_until(lambda: recorder.updates["t-1"])
    feed.push("t-1", status="processing", percentage="50")
    assert len(recorder.updates["t-1"]) == 2  # delivered on the pushing thread, at once
    polls_before = api.count("/fetch")
    feed.push("t-1", status="processing", percentage="20")  # out of order: ignored
    clock.run_for(10)
    assert api.count("/fetch") <= polls_before + 1, "a pushed task is still polled often"
    feed.push("t-1", status="finished", percentage="100", video_url="https://cdn.example/v.mp4")
    assert tracker.wait("t-1", timeout=0).is_finished
    delivered = [(t.status, t.percentage) for t in recorder.updates["t-1"]]
    assert delivered == [("processing", 10), ("processing", 50), ("finished", 100)]


def test_a_push_before_track_is_kept_for_the_task(api_client, tracker_for):
    feed = Feed()
    tracker = tracker_for(api_client, webhooks=feed)
    feed.push("early", status="finished", percentage="100", video_url="https://cdn.example/e.mp4")
    recorder = Recorder()
    tracker.track("early", on_update=recorder.on_update)
    assert [t.status for t in recorder.updates["early"]] == ["finished"]


def test_a_late_subscriber_gets_the_current_state(api, api_client, tracker_for, clock):
    api.add_task("t-1", FINISHED)
    tracker = tracker_for(api_client)
    first = tracker.track("t-1")
    clock.run_until(lambda: first.done)
    recorder = Recorder()
    handle = tracker.track("t-1", on_update=recorder.on_update)
    assert handle.done and handle.task.is_finished
    assert [t.status for t in recorder.updates["t-1"]] == ["finished"]


def test_cancel_ends_callbacks_and_polling(api, api_client, tracker_for, clock):
    before = set(threading.enumerate())
    api.add_task("t-1", RUNNING)
    recorder = Recorder()
    tracker = tracker_for(api_client, min_interval=0.1)
    handle = tracker.track("t-1", on_update=recorder.on_update)
    clock.run_until(lambda: recorder.updates["t-1"])
    assert not handle.done and handle.task.percentage == 10
    handle.cancel()
    tracker.refresh()  # nothing left to refresh
    wait_for(lambda: poller_threads(before) == [], "the poller to end: nothing is followed")
    assert "idle" in repr(tracker)
    assert len(recorder.updates["t-1"]) == 1


def test_the_poller_steps_one_due_batch_at_a_time(api, api_client, clock):
    """`poll_once` without a thread: what is due at a moment, and when the next step is."""
    from runway_widget.tracking.board import Subscription, TaskBoard
    from runway_widget.tracking.delivery import Delivery
    from runway_widget.tracking.polling import Poller
    from runway_widget.tracking.schedule import Timing

    for task_id in ("a", "b", "c"):
        api.add_task(task_id, RUNNING)
    board = TaskBoard(Timing(), clock)
    delivery = Delivery(board, api_client)
    poller = Poller(board, api_client, delivery)
    assert poller.poll_once(clock()) is None  # nothing followed
    for task_id in ("a", "b", "c"):
        delivery.subscribe(task_id, Subscription(None, None))
    first = poller.poll_once(clock())
    assert first == clock() + Timing().first_delay and api.count() == 0
    assert poller.poll_once(first) == first  # all three were due: one batch, more may be
    assert [s.json for s in api.requests()] == [{"task_ids": ["a", "b", "c"]}]
    assert poller.poll_once(first) > first  # nothing more is due at that moment
    assert api.count() == 1
