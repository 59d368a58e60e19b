"""The background poller over real HTTP: batching, faults, dedup, lifecycle and waiting.

Two servers play the service: the demo backend (jobs that really run) and the scriptable
`api_server.ApiServer` (exact reply sequences: stale replies, faults at a chosen moment).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
import requests
from api_server import TEST_API_KEY, ApiServer, Reply, error

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.errors import TaskFailedError, TaskTimeoutError
from runway_widget.models import Task
from runway_widget.store import JobStore
from runway_widget.tracking.tracker import THREAD_NAME, TaskTracker
from runway_widget.tracking.webhooks import WebhookReceiver

FINISHED = {"status": "finished", "percentage": 100, "video_url": "https://cdn.example/v.mp4"}


class Recorder:
    """Collects every callback, per task, and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.updates: dict[str, list[Task]] = defaultdict(list)
        self.progress: dict[str, list[float]] = defaultdict(list)
        self._changed = threading.Condition()

    def on_update(self, task: Task) -> None:
        with self._changed:
            self.updates[task.task_id].append(task)
            self._changed.notify_all()

    def progress_for(self, task_id: str):
        def on_progress(value: float) -> None:
            with self._changed:
                self.progress[task_id].append(value)
                self._changed.notify_all()

        return on_progress

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)


def poller_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def threads_outside_the_demo() -> list[str]:
    """Threads of this process, leaving out the demo backend's (connections come and go)."""
    return sorted(
        t.name for t in threading.enumerate() if not t.name.startswith("runway-widget-demo")
    )


def eventually(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


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
def api() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


@pytest.fixture
def api_client(api: ApiServer, tmp_path) -> Iterator[ApiframeClient]:
    client = ApiframeClient(
        api_key=TEST_API_KEY,
        base_url=api.base_url,
        store=JobStore(tmp_path / "jobs.jsonl"),
        requests_per_second=50,
    )
    yield client
    client.close()


@pytest.fixture
def tracker_for():
    """Build trackers that are always stopped at the end of the test."""
    made: list[TaskTracker] = []

    def build(client: ApiframeClient, **kwargs) -> TaskTracker:
        tracker = TaskTracker(client, **kwargs)
        made.append(tracker)
        return tracker

    yield build
    for tracker in made:
        tracker.stop()


def submit(
    client: ApiframeClient, count: int, prompt: str = "a lighthouse in a storm"
) -> list[str]:
    return [client.imagine(prompt=prompt, generation_type="text2video") for _ in range(count)]


def fetch_requests(server) -> int:
    return server.stats.get("/fetch", 0) + server.stats.get("/fetch-many", 0)


# -- the demo backend: real jobs --------------------------------------------------------------


def test_thirty_tasks_all_reach_their_callbacks_in_batched_requests(
    demo_server, demo_client, tracker_for
):
    ids = submit(demo_client, 30)
    recorder = Recorder()
    tracker = tracker_for(demo_client)
    for task_id in ids:
        tracker.track(task_id, on_update=recorder.on_update)
    finished = [tracker.wait(task_id, timeout=60) for task_id in ids]

    assert all(task.is_finished and task.video_url for task in finished)
    for task_id in ids:
        updates = recorder.updates[task_id]
        assert updates[-1].is_finished
        assert_never_backwards(updates)
    assert demo_server.stats.get("/fetch-many", 0) > 0
    polls_seen = sum(len(recorder.updates[task_id]) for task_id in ids)
    assert fetch_requests(demo_server) < polls_seen / 3
    assert demo_client.store.get(ids[0]).status == "finished"


def test_progress_moves_between_polls_and_never_goes_back(tracker_for, tmp_path):
    """Smoke test of the tracker's animation; the estimate itself is tested on a fake clock
    (test_schedule.py)."""
    from runway_widget.demo import DemoServer

    with DemoServer(job_seconds=4.0) as server:
        client = ApiframeClient(
            api_key=server.api_key,
            base_url=server.base_url,
            store=JobStore(tmp_path / "slow.jsonl"),
        )
        (task_id,) = submit(client, 1)
        recorder = Recorder()
        tracker = tracker_for(client)
        tracker.track(
            task_id, on_update=recorder.on_update, on_progress=recorder.progress_for(task_id)
        )
        assert tracker.wait(task_id, timeout=60).is_finished
        values = recorder.progress[task_id]
        client.close()

    assert values == sorted(values)
    assert values[-1] == 100.0
    assert all(0 <= v <= 99 for v in values[:-1])
    shown = {round(v) for v in values[:-1]}
    polled = {t.percentage for t in recorder.updates[task_id] if t.percentage is not None}
    assert shown - polled, "the bar only moved when a poll came back"


def test_faults_delay_but_never_lose_a_task(demo_server, demo_client, tracker_for, caplog):
    ids = submit(demo_client, 12)
    faults = demo_server.faults
    faults.error_rate = 0.15
    faults.drop_rate = 0.05
    faults.malformed_rate = 0.05
    faults.rate_limit_burst = 3
    faults.retry_after = 0.5
    recorder = Recorder()
    tracker = tracker_for(demo_client, min_interval=0.1)
    for task_id in ids:
        tracker.track(task_id, on_update=recorder.on_update)
    finished = [tracker.wait(task_id, timeout=120) for task_id in ids]
    assert [t.task_id for t in finished if t.is_finished] == ids
    for task_id in ids:
        assert_never_backwards(recorder.updates[task_id])
    assert "polling paused" in caplog.text  # the faults did hit


def test_a_failed_job_raises_with_its_message(demo_client, tracker_for):
    (task_id,) = submit(demo_client, 1, prompt="something forbidden")
    tracker = tracker_for(demo_client)
    with pytest.raises(TaskFailedError) as caught:
        tracker.wait(task_id, timeout=30)
    assert caught.value.task.is_failed
    assert caught.value.task.message
    assert demo_client.store.get(task_id).status == "failed"


def test_wait_times_out_with_the_last_state_and_the_task_goes_on(demo_client, tracker_for):
    (task_id,) = submit(demo_client, 1)
    tracker = tracker_for(demo_client)
    with pytest.raises(TaskTimeoutError) as caught:
        tracker.wait(task_id, timeout=0.01)
    assert caught.value.task_id == task_id
    assert tracker.wait(task_id, timeout=30).is_finished
    assert tracker.wait(task_id, timeout=0).is_finished  # settled: no waiting at all


def test_wait_async_shares_the_outcome(demo_client, tracker_for):
    ok, bad = submit(demo_client, 1) + submit(demo_client, 1, prompt="forbidden fruit")
    tracker = tracker_for(demo_client)

    async def main():
        with pytest.raises(TaskTimeoutError):
            await tracker.wait_async(ok, timeout=0.01)
        finished = await tracker.wait_async(ok, timeout=30)
        with pytest.raises(TaskFailedError):
            await tracker.wait_async(bad, timeout=30)
        return finished

    assert asyncio.run(main()).is_finished


def test_sync_wait_works_inside_a_running_event_loop(demo_client, tracker_for):
    (task_id,) = submit(demo_client, 1)
    tracker = tracker_for(demo_client)

    async def main():
        await asyncio.sleep(0)
        return tracker.wait(task_id, timeout=30)

    assert asyncio.run(main()).is_finished


def test_stop_is_immediate_leaves_no_thread_and_tracking_restarts(demo_client, tracker_for):
    assert eventually(lambda: poller_threads() == [])  # earlier tests' pollers have ended
    start = threads_outside_the_demo()
    ids = submit(demo_client, 3)
    tracker = tracker_for(demo_client)
    for task_id in ids:
        tracker.track(task_id)
    assert len(poller_threads()) == 1

    waiter_error: list[BaseException] = []

    def waiter() -> None:
        try:
            tracker.wait(ids[0])
        except BaseException as exc:
            waiter_error.append(exc)

    blocked = threading.Thread(target=waiter)
    blocked.start()
    tracker.stop()
    blocked.join(5)
    assert not blocked.is_alive()
    assert isinstance(waiter_error[0], TaskTimeoutError)
    assert poller_threads() == []
    assert threads_outside_the_demo() == start

    again = tracker.wait(ids[1], timeout=30)
    assert again.is_finished
    assert eventually(lambda: poller_threads() == [])  # idle: the thread ends by itself


def test_callback_exceptions_do_not_stop_polling(demo_client, tracker_for, caplog):
    ids = submit(demo_client, 2)
    recorder = Recorder()

    def broken(task: Task) -> None:
        raise RuntimeError("a broken view")

    tracker = tracker_for(demo_client)
    for task_id in ids:
        tracker.track(task_id, on_update=broken, on_progress=lambda value: 1 / 0)
        tracker.track(task_id, on_update=recorder.on_update)
    assert all(tracker.wait(task_id, timeout=30).is_finished for task_id in ids)
    assert all(recorder.updates[task_id][-1].is_finished for task_id in ids)
    assert "a broken view" in caplog.text


# -- the scripted server: exact reply sequences -----------------------------------------------


def test_stale_and_duplicate_replies_never_reach_callbacks(api, api_client, tracker_for):
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
    tracker.track("t-1", on_update=recorder.on_update)
    assert tracker.wait("t-1", timeout=30).is_finished
    assert api.count("/fetch") == 6
    delivered = [(t.status, t.percentage) for t in recorder.updates["t-1"]]
    assert delivered == [("processing", 40), ("processing", 60), ("finished", 100)]


def test_omitted_and_unknown_ids_are_rechecked_then_failed_clearly(api, api_client, tracker_for):
    api.add_task("known", {"status": "processing", "percentage": "10"}, FINISHED)
    tracker = tracker_for(api_client, min_interval=0.1)
    tracker.track("known")
    tracker.track("ghost")
    assert tracker.wait("known", timeout=30).is_finished
    with pytest.raises(TaskFailedError) as caught:
        tracker.wait("ghost", timeout=30)
    assert "does not know task ghost" in str(caught.value)
    single_checks = [s for s in api.requests("/fetch") if s.json == {"task_id": "ghost"}]
    assert len(single_checks) >= 2
    assert api.count("/fetch-many") >= 1


def test_errors_and_rate_limits_back_off_and_recover(api, api_client, tracker_for):
    api.add_task("t-1", {"status": "processing", "percentage": "10"}, FINISHED)
    api.script(
        "/fetch",
        error(429, "Too many requests", **{"Retry-After": "1"}),
        error(503, "busy"),
        Reply(200, body="<html>not json</html>"),
        Reply(drop=True),
        error(500, "oops"),
    )
    tracker = tracker_for(api_client, min_interval=0.1)
    assert tracker.wait("t-1", timeout=60).is_finished
    arrivals = [s.at for s in api.requests("/fetch")]
    assert len(arrivals) == 7
    assert arrivals[1] - arrivals[0] >= 1.0, "Retry-After was not honoured"


def test_requests_stay_under_the_client_budget(api, tmp_path, tracker_for):
    for i in range(60):
        api.add_task(f"t-{i}", {"status": "processing", "percentage": "10"})
    client = ApiframeClient(
        api_key=TEST_API_KEY,
        base_url=api.base_url,
        store=JobStore(tmp_path / "jobs.jsonl"),
        requests_per_second=4,
    )
    tracker = tracker_for(client)
    for i in range(60):
        tracker.track(f"t-{i}")
    time.sleep(0.3)  # smoke test: the bucket itself is tested on a fake clock (test_client.py)
    tracker.refresh()
    time.sleep(1.2)
    tracker.stop()
    arrivals = sorted(s.at for s in api.requests())
    # A 4/s bucket holding 2 tokens allows at most 2 + 4 * span requests in any span.
    for i, first in enumerate(arrivals):
        for j in range(i, len(arrivals)):
            assert j - i + 1 <= 2 + 4 * (arrivals[j] - first) + 1, arrivals
    assert all(len(s.json["task_ids"]) <= 20 for s in api.requests("/fetch-many"))
    client.close()


def test_a_pushed_update_reaches_callbacks_once_and_polls_become_rare(api, api_client, tracker_for):
    api.add_task("t-1", {"status": "processing", "percentage": "10"})
    recorder = Recorder()
    with WebhookReceiver("hook-secret-0001") as receiver:
        tracker = tracker_for(api_client, webhooks=receiver)
        tracker.track("t-1", on_update=recorder.on_update)
        assert recorder.wait_for(lambda: recorder.updates["t-1"], timeout=10)

        def push(**state) -> None:
            body = {"task_id": "t-1", "task_type": "runway", **state}
            reply = requests.post(
                receiver.local_url, json=body, headers={"x-webhook-secret": "hook-secret-0001"}
            )
            assert reply.status_code < 300

        push(status="processing", percentage="50")
        assert recorder.wait_for(lambda: len(recorder.updates["t-1"]) == 2, timeout=10)
        polls_before = api.count("/fetch")
        push(status="processing", percentage="20")  # out of order: ignored
        time.sleep(1.5)
        assert api.count("/fetch") == polls_before, "a pushed task is still polled often"
        push(status="finished", percentage="100", video_url="https://cdn.example/v.mp4")
        assert tracker.wait("t-1", timeout=10).is_finished
    delivered = [(t.status, t.percentage) for t in recorder.updates["t-1"]]
    assert delivered == [("processing", 10), ("processing", 50), ("finished", 100)]


def test_a_late_subscriber_gets_the_current_state(api, api_client, tracker_for):
    api.add_task("t-1", FINISHED)
    tracker = tracker_for(api_client)
    assert tracker.wait("t-1", timeout=30).is_finished
    recorder = Recorder()
    handle = tracker.track("t-1", on_update=recorder.on_update)
    assert handle.done and handle.task.is_finished
    assert [t.status for t in recorder.updates["t-1"]] == ["finished"]


def test_cancel_ends_callbacks_and_polling(api, api_client, tracker_for):
    api.add_task("t-1", {"status": "processing", "percentage": "10"})
    recorder = Recorder()
    tracker = tracker_for(api_client, min_interval=0.1)
    handle = tracker.track("t-1", on_update=recorder.on_update)
    assert recorder.wait_for(lambda: recorder.updates["t-1"], timeout=10)
    assert not handle.done and handle.task.percentage == 10
    handle.cancel()
    assert eventually(lambda: poller_threads() == [])
    polls = api.count("/fetch")
    time.sleep(1.0)
    assert api.count("/fetch") == polls
