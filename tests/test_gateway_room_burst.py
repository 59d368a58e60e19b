"""The whole room presses Generate at once, over real HTTP, in front of a limited upstream.

60 participants submit two jobs each within 2 seconds to a gateway whose upstream (the demo
backend) runs at most 4 jobs at once and refuses the rest as a provider does: they come
three times faster than the upstream can take jobs (10 a second), so the queue is full
while they arrive. Every job is
accepted and finishes, nobody sees an error, the upstream never runs more than 4, and every
participant's first job starts upstream before anyone's second. Then the restart: jobs
queued when the gateway stops are sent by the next one, each exactly once.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.demo import DemoServer
from runway_widget.gateway.upstream import Upstream
from runway_widget.store import JobStore
from tests.api_server import TEST_API_KEY, ApiServer
from tests.gateway_support import gateway_on, participant, upstream_client, upstream_id

pytestmark = pytest.mark.timeout(240)

PEOPLE = 60
ARRIVALS_MS = 2000  # everyone's first press falls within this
LIMIT = 4
SAME_ROUND = 0.1  # seconds: jobs sent together reach the upstream within this; a job takes 0.4
JOB = {"prompt": "the room's lighthouse", "generation_type": "text2video"}


def test_sixty_participants_at_once_are_all_served_fairly_within_the_upstreams_limit(tmp_path):
    with DemoServer(job_seconds=0.4, concurrency=LIMIT) as demo:
        client = upstream_client(demo.base_url, demo.api_key, tmp_path)
        with gateway_on(Upstream(client), tmp_path, rate=100, burst=100) as gateway:
            people = [participant(gateway, tmp_path, f"p{i:02d}") for i in range(PEOPLE)]
            tasks: dict[int, list[str]] = {}
            errors: list[BaseException] = []
            start = time.monotonic() + 0.5
            offsets = random.Random(23).sample(range(ARRIVALS_MS), PEOPLE)

            def press_generate_twice(i: int) -> None:
                time.sleep(max(0.0, start + offsets[i] / 1000 - time.monotonic()))
                try:
                    tasks[i] = [people[i].imagine(**JOB) for _ in range(2)]
                    for task_id in tasks[i]:
                        people[i].wait(task_id, timeout=180, poll_interval=0.5)
                except BaseException as exc:  # a participant's error fails the test below
                    errors.append(exc)

            threads = [
                threading.Thread(target=press_generate_twice, args=(i,)) for i in range(PEOPLE)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            started = {
                task_id: demo._tasks[upstream_id(gateway, task_id)].submitted_at
                for pair in tasks.values()
                for task_id in pair
            }
            report = gateway.report()
    assert errors == []
    assert len(tasks) == PEOPLE and all(len(pair) == 2 for pair in tasks.values())
    assert sum(row["finished"] for row in report) == 2 * PEOPLE
    assert demo.peak_running <= LIMIT
    firsts = [started[first] for first, _second in tasks.values()]
    seconds = [started[second] for _first, second in tasks.values()]
    # every first job went up before anyone's second: at the latest in the same round (the
    # jobs a free slot takes together leave at once, in parallel), never a round later
    assert max(firsts) <= min(seconds) + SAME_ROUND


def test_jobs_queued_when_the_gateway_stops_are_sent_by_the_next_one_once_each(tmp_path):
    clip = b"\0\0\0\x18ftypmp42" + bytes(2000)
    with ApiServer() as api:
        api.files["/clips/done.mp4"] = clip
        finished = {
            "status": "finished",
            "percentage": 100,
            "video_url": f"{api.base_url}/clips/done.mp4",
        }
        db = {"db": f"sqlite:///{tmp_path / 'gateway.sqlite3'}", "upstream_concurrency": 1}
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path, **db) as first:
            people = [participant(first, tmp_path, name) for name in ("ana", "ben", "cat")]
            tokens = [person.api_key for person in people]
            task_ids = [person.imagine(**JOB) for person in people]
            sent_first = upstream_id(first, task_ids[0])
            positions = [people[i].fetch(task_ids[i]).queue_position for i in (1, 2)]
        assert api.count("/runway-imagine") == 1  # one slot: the other two wait in the queue
        api.add_task(sent_first, finished)  # it ends while no gateway runs
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path, **db) as second:
            again = [
                ApiframeClient(token, second.base_url, store=JobStore(tmp_path / f"{i}.jsonl"))
                for i, token in enumerate(tokens)
            ]
            for person, task_id in zip(again[1:], task_ids[1:], strict=True):
                api.add_task(upstream_id(second, task_id), finished)
                person.wait(task_id, timeout=30, poll_interval=0.1)
            done = [
                person.wait(task_id, timeout=30, poll_interval=0.1)
                for person, task_id in zip(again, task_ids, strict=True)
            ]
        imagined = [seen.at for seen in api.requests("/runway-imagine")]
    assert positions == [1, 2]
    assert len(imagined) == 3  # each sent once: none lost, none twice
    assert all(task.is_finished for task in done)
