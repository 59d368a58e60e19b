"""The gateway on a fake upstream that counts requests: economy, faults, unknown outcomes."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from runway_widget.errors import TaskFailedError
from runway_widget.gateway.upstream import Upstream
from tests.api_server import TEST_API_KEY, ApiServer, Reply, error
from tests.fake_clock import FakeClock
from tests.gateway_support import (
    call,
    ended,
    gateway_on,
    participant,
    upstream_client,
    upstream_id,
)
from tests.widget_helpers import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def api():
    with ApiServer() as api:
        yield api


UPSTREAM_TIMEOUT = 2.0  # the upstream client's deadline for one request, seconds
LATE = UPSTREAM_TIMEOUT + 1.0  # an answer that comes after it
POLL_INTERVAL = (0.05, 0.5)  # the gateway's polls of the upstream: its floor and ceiling


@pytest.fixture
def gateway(api, tmp_path):
    client = upstream_client(api.base_url, TEST_API_KEY, tmp_path, timeout=UPSTREAM_TIMEOUT)
    with gateway_on(Upstream(client), tmp_path, poll_interval=POLL_INTERVAL) as gateway:
        yield gateway


def _progress(api: ApiServer, task_id: str, steps: int = 6) -> list[dict]:
    """A task that moves one step per upstream read and finishes with a clip on ``api``."""
    api.files[f"/clips/{task_id}.mp4"] = b"\0\0\0\x18ftypmp42" + bytes(2000)
    running = [{"status": "processing", "percentage": str(p)} for p in range(0, 100, 100 // steps)]
    clip = f"{api.base_url}/clips/{task_id}.mp4"
    return [*running, {"status": "finished", "percentage": 100, "video_url": clip}]


def test_participants_polling_hard_cost_the_upstream_about_one_request_per_task(
    api, gateway, tmp_path
):
    people = [participant(gateway, tmp_path) for _ in range(6)]
    task_ids = [p.imagine(prompt="x", generation_type="text2video") for p in people]
    for task_id in task_ids:
        sent = upstream_id(gateway, task_id)
        api.add_task(sent, *_progress(api, sent))
    last: dict[str, dict] = {}
    asked = [0]
    stop = threading.Event()

    def poll(person, task_id):
        while not stop.is_set():
            reply = call(gateway, "POST", "/fetch", person.api_key, json={"task_id": task_id})
            asked[0] += 1
            if reply.status_code == 200:
                last[task_id] = reply.json()
            stop.wait(0.15)

    pairs = zip(people, task_ids, strict=True)
    threads = [threading.Thread(target=poll, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not all(
        last.get(t, {}).get("status") == "finished" for t in task_ids
    ):
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join()
    assert all(last[t]["video_url"].startswith(gateway.base_url + "/videos/") for t in task_ids)
    upstream_reads = api.count("/fetch") + api.count("/fetch-many")
    assert asked[0] > 10 * len(task_ids)
    assert upstream_reads <= 8 * len(task_ids)  # the steps of the task, however hard they poll
    assert api.count("/runway-imagine") == len(task_ids)
    sent = [upstream_id(gateway, t) for t in task_ids]
    clip_downloads = sum(api.count(f"/clips/{t}.mp4") for t in sent)
    assert clip_downloads == len(task_ids)  # each clip fetched once


def test_an_upstream_500_on_submit_is_recorded_as_unknown_and_never_retried(api, gateway, tmp_path):
    jo = participant(gateway, tmp_path, "jo", jobs=3)
    api.script("/runway-imagine", error(500, "boom"))
    task_id = jo.imagine(prompt="costly", generation_type="text2video")
    with pytest.raises(TaskFailedError, match="may or may not have been created"):
        jo.wait(task_id, timeout=20, poll_interval=0.1)
    assert api.count("/runway-imagine") == 1
    [row] = gateway.report()
    assert (row["unknown"], row["jobs_used"], row["running"], row["queued"]) == (1, 1, 0, 0)
    assert row["unknown_submissions"][0]["request"].find("costly") > 0
    assert jo.account()["jobs_left"] == 2


@pytest.mark.parametrize("reply", [Reply(drop=True), Reply(delay=LATE)], ids=["drop", "timeout"])
def test_a_dropped_or_timed_out_submit_is_unknown_too(api, gateway, tmp_path, reply):
    kim = participant(gateway, tmp_path, jobs=2)
    api.script("/runway-imagine", reply)
    task_id = kim.imagine(prompt="lost answer", generation_type="text2video")
    assert ended(gateway, task_id).state == "unknown"
    assert api.count("/runway-imagine") == 1
    assert gateway.report()[0]["unknown"] == 1


def test_an_upstream_that_certainly_did_not_take_a_job_keeps_it_in_the_queue(api, tmp_path):
    clock = FakeClock()
    client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
    with gateway_on(Upstream(client), tmp_path, clock=clock) as gateway:
        lee = participant(gateway, tmp_path, jobs=1)
        api.script(
            "/runway-imagine",
            error(503, "down"),  # unreachable: the first pause, 1 s
            error(429, "slow down", **{"Retry-After": "20"}),
            error(400, "Too many running jobs for your plan"),  # no Retry-After: doubled
            error(503, "down", **{"Retry-After": "9"}),  # unreachable, as the upstream said
        )
        task_id = lee.imagine(prompt="later", generation_type="text2video")
        queue, pauses = gateway.workshop.submissions.queue, []
        for tries in (1, 2, 3, 4):  # each answer puts the job back and pauses everyone
            paused = wait_for(
                lambda tries=tries: api.count("/runway-imagine") == tries
                and queue.status()["paused_for"],
                f"the pause after try {tries}",
            )
            pauses.append(paused)
            assert gateway.ledger.job(task_id).state == "queued"  # it keeps its place
            clock.advance(paused)
            gateway.workshop.submissions.dispatcher.poke()
        sent = upstream_id(gateway, task_id)  # on the fifth try: nobody saw the refusals
        row = gateway.report()[0]
    assert pauses == [1.0, 20.0, 4.0, 9.0]  # the first pause, as said, doubled twice, as said
    assert sent.startswith("task-")
    assert api.count("/runway-imagine") == 5
    assert (row["jobs_used"], row["refused"], row["unknown"]) == (1, 0, 0)


def test_without_the_queue_a_refusal_reaches_the_participant_and_gives_the_quota_back(
    api, tmp_path
):
    client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
    with gateway_on(Upstream(client), tmp_path, queue=False) as gateway:
        lee = participant(gateway, tmp_path, jobs=1)
        body = {"prompt": "later", "generation_type": "text2video"}
        api.script("/runway-imagine", *[error(503, "down", **{"Retry-After": "0"})] * 3)
        reply = call(gateway, "POST", "/runway-imagine", lee.api_key, json=body)
        assert reply.status_code == 503 and int(reply.headers["Retry-After"]) >= 1
        row = gateway.report()[0]
        assert (row["jobs_used"], row["refused"], row["unknown"]) == (0, 1, 0)
        api.script("/runway-imagine", *[error(429, "slow down", **{"Retry-After": "0"})] * 3)
        reply = call(gateway, "POST", "/runway-imagine", lee.api_key, json=body)
        assert reply.status_code == 429 and int(reply.headers["Retry-After"]) >= 1
        assert gateway.report()[0]["jobs_used"] == 0
        api.script("/runway-imagine", error(503, "down", **{"Retry-After": "0"}))
        task_id = lee.imagine(**body)  # the upstream client retried the 503
        assert api.count("/runway-imagine") == 3 + 3 + 2
        assert gateway.ledger.job(task_id).state == "submitted"


def test_upstream_faults_on_reads_never_reach_participants(api, gateway, tmp_path):
    mo = participant(gateway, tmp_path)
    task_id = mo.imagine(prompt="x", generation_type="text2video")
    api.add_task(
        upstream_id(gateway, task_id),
        {"status": "processing", "percentage": "10"},
        {"status": "failed", "message": "moderated"},
    )
    api.script(
        "/fetch",
        error(502, "bad gateway"),
        error(429, "slow down", **{"Retry-After": "1"}),
        Reply(delay=LATE),
        Reply(body="<html>"),
    )
    before = time.monotonic()
    assert call(gateway, "POST", "/fetch", mo.api_key, json={"task_id": task_id}).ok
    assert time.monotonic() - before < 1.0  # answered from state, not from the upstream
    deadline = time.monotonic() + 40
    while mo.fetch(task_id).status != "failed" and time.monotonic() < deadline:
        time.sleep(0.2)
    task = mo.fetch(task_id)
    assert (task.status, task.message) == ("failed", "moderated")
    assert gateway.report()[0]["failed"] == 1
    assert gateway.report()[0]["running"] == 0


def test_a_refused_upstream_key_is_not_shown_as_the_participants_problem(api, gateway, tmp_path):
    ned = participant(gateway, tmp_path, jobs=1)
    api.api_key = "another-key"
    task_id = ned.imagine(prompt="x", generation_type="text2video")
    with pytest.raises(TaskFailedError, match="upstream key was refused") as failed:
        ned.wait(task_id, timeout=20, poll_interval=0.1)
    assert TEST_API_KEY not in str(failed.value.task.raw)
    assert ned.account()["jobs_left"] == 1  # refused: the quota is given back
    assert gateway.report()[0]["refused"] == 1


def test_participant_webhooks_are_honoured_by_the_gateway_alone(api, tmp_path):
    from runway_widget.tracking.webhooks import WebhookReceiver

    client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
    pushed = []
    with (  # the receiver is on loopback: the instructor allows it for this room
        gateway_on(
            Upstream(client), tmp_path, allow_private_webhooks=True, poll_interval=POLL_INTERVAL
        ) as gateway,
        WebhookReceiver(secret="pat-hook-secret") as receiver,
    ):
        pat = participant(gateway, tmp_path)
        receiver.subscribe(pushed.append)
        task_id = pat.imagine(
            prompt="x",
            generation_type="text2video",
            webhook_url=receiver.url,
            webhook_secret=receiver.secret,
        )
        sent = upstream_id(gateway, task_id)
        api.add_task(sent, *_progress(api, sent, steps=2))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t.is_finished for t in pushed):
            time.sleep(0.1)
        assert receiver.stats["rejected"] == 0
    final = [t for t in pushed if t.is_finished]
    assert final and final[0].video_url.startswith(gateway.base_url + "/videos/")
    [submitted] = api.requests("/runway-imagine")
    assert "webhook_url" not in submitted.json and b"pat-hook-secret" not in submitted.body


def _pollers() -> set[threading.Thread]:
    from runway_widget.tracking.polling import THREAD_NAME

    return {thread for thread in threading.enumerate() if thread.name == THREAD_NAME}


def test_a_send_answered_while_the_gateway_stops_leaves_no_poller_behind(api, tmp_path):
    """The answer to a send still in flight at the stop is recorded, and the task is left to
    the ledger (the next start resumes it): no poller outlives the gateway."""
    asked, release = threading.Event(), threading.Event()

    def held(_seen):
        asked.set()
        release.wait(10)
        return {"task_id": "task-late"}

    api.script("/runway-imagine", Reply(json=held))
    before = _pollers()
    client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
    with gateway_on(Upstream(client), tmp_path) as gateway:
        kit = participant(gateway, tmp_path)
        task_id = kit.imagine(prompt="late", generation_type="text2video")
        assert asked.wait(10)
        stopping = threading.Thread(target=gateway.stop)
        stopping.start()
        wait_for(lambda: not _answers(gateway), "the gateway to stop serving")
        release.set()  # the answer comes while the stop waits for the send
        stopping.join(20)
        row = gateway.ledger.job(task_id)
        left = _pollers() - before  # before the block's own stop, which would end one
    assert row is not None and (row.state, row.upstream_task_id) == ("submitted", "task-late")
    assert left == set()


def _answers(gateway) -> bool:
    try:
        call(gateway, "GET", "/health")
    except requests.RequestException:
        return False
    return True
