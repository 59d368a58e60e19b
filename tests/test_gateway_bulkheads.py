"""One slow party delays nobody else: clip copies and webhook pushes in lanes of their own.

Hostile peers are small servers on 127.0.0.1 whose handlers wait on events the test holds,
so "still in flight" is a fact the test controls, not a guess about time.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import signal
import threading
import time

import pytest
import requests

from runway_widget._http.outbound import OutboundPolicy
from runway_widget.gateway.clips import ClipStore
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.ledger import JobRow
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.participant_webhooks import OWNER_TASKS, ParticipantWebhooks
from runway_widget.gateway.upstream import Upstream
from tests.api_server import TEST_API_KEY, ApiServer, Reply
from tests.gateway_support import (
    call,
    free_port,
    gateway_on,
    participant,
    serve_process,
    stop_process,
    upstream_client,
    upstream_id,
)
from tests.hostile_server import HostileServer, json_reply, response_bytes, send, trickle
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

CLIP = b"\0\0\0\x18ftypmp42" + bytes(3000)
REHEARSAL = OutboundPolicy(allow_private=True)  # the servers here are all on loopback


def _clip_store(tmp_path, policy: OutboundPolicy, **options) -> tuple[ClipStore, queue.Queue]:
    stored: queue.Queue = queue.Queue()
    clips = ClipStore(
        tmp_path / "clips",
        policy,
        lambda task_id, path: stored.put((task_id, path)),
        limit=10**6,
        base_seconds=5.0,
        min_rate=1000.0,
        **options,
    )
    return clips, stored


def _failing_then(ok: bytes, failures: int):
    """A route that answers 503 ``failures`` times, then ``ok``."""
    calls = itertools.count()

    def behave(handler) -> None:
        data = ok if next(calls) >= failures else json_reply({"errors": []}, 503)
        handler.wfile.write(data)

    return behave


@pytest.fixture
def server():
    with HostileServer() as bad:
        bad.route("/clip.mp4", send(response_bytes(200, CLIP, {"Content-Type": "video/mp4"})))
        yield bad


# -- clip copies -------------------------------------------------------------------------------


def test_a_clip_at_an_address_the_rule_refuses_is_never_fetched_nor_retried(tmp_path, server):
    clips, stored = _clip_store(tmp_path, OutboundPolicy(), pause=0.01)
    for task_id, url in [
        ("loopback", f"{server.base_url}/clip.mp4"),
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("script", "javascript:alert(1)"),
        ("file", "file:///etc/passwd"),
    ]:
        clips.fetch_later(task_id, url, "k" * 16 + task_id, owner=1)
        assert stored.get(timeout=10) == (task_id, None)
    clips.close()
    assert server.count() == 0
    assert not list((tmp_path / "clips").iterdir())


def test_a_clip_on_the_upstreams_own_origin_is_copied(tmp_path, server):
    clips, stored = _clip_store(tmp_path, OutboundPolicy().trusting(server.base_url))
    clips.fetch_later("t1", f"{server.base_url}/clip.mp4", "k" * 20, owner=1)
    task_id, path = stored.get(timeout=10)
    clips.close()
    assert task_id == "t1" and path.read_bytes() == CLIP


def test_a_failed_copy_waits_for_its_retry_without_holding_the_worker(tmp_path, server):
    server.route("/broken.mp4", _failing_then(b"", failures=10**6))
    clips, stored = _clip_store(tmp_path, REHEARSAL, workers=1, pause=60.0)
    clips.fetch_later("broken", f"{server.base_url}/broken.mp4", "b" * 20, owner=1)
    wait_for(lambda: server.count("/broken.mp4") == 1)
    clips.fetch_later("fine", f"{server.base_url}/clip.mp4", "f" * 20, owner=2)
    task_id, path = stored.get(timeout=10)  # the one worker is not sleeping for "broken"
    assert task_id == "fine" and path.read_bytes() == CLIP
    assert stored.empty() and server.count("/broken.mp4") == 1  # its retry is still due
    started = time.monotonic()
    clips.close()
    assert time.monotonic() - started < 3
    clips.fetch_later("late", f"{server.base_url}/clip.mp4", "l" * 20, owner=3)  # stopping
    assert stored.empty()  # not recorded as failed: a restart copies it


def test_one_owners_stuck_clips_hold_one_worker_and_delay_only_their_own(tmp_path, server):
    release = threading.Event()
    ok = response_bytes(200, CLIP, {"Content-Type": "video/mp4"})
    server.route("/stuck.mp4", lambda handler: (release.wait(60), handler.wfile.write(ok)))
    clips, stored = _clip_store(tmp_path, REHEARSAL, workers=2)
    try:
        for n in range(3):
            clips.fetch_later(f"a{n}", f"{server.base_url}/stuck.mp4", f"a{n}" * 10, owner=1)
        wait_for(lambda: server.count("/stuck.mp4") == 1)
        clips.fetch_later("b", f"{server.base_url}/clip.mp4", "b" * 20, owner=2)
        assert stored.get(timeout=10)[0] == "b"  # while a0 is stuck, on the other worker
        assert server.count("/stuck.mp4") == 1  # a1 and a2 wait for their owner's turn
        release.set()
        assert sorted(stored.get(timeout=10)[0] for _ in range(3)) == ["a0", "a1", "a2"]
    finally:
        release.set()
        clips.close()


def test_a_failed_copy_is_tried_again_later_and_kept_when_it_works(tmp_path, server, caplog):
    caplog.set_level(logging.WARNING)
    ok = response_bytes(200, CLIP, {"Content-Type": "video/mp4"})
    server.route("/flaky.mp4", _failing_then(ok, failures=2))
    clips, stored = _clip_store(tmp_path, REHEARSAL, pause=0.01)
    clips.fetch_later("t1", f"{server.base_url}/flaky.mp4?sig=s3cr3t", "k" * 20, owner=1)
    task_id, path = stored.get(timeout=10)
    clips.close()
    assert task_id == "t1" and path.read_bytes() == CLIP
    assert server.count("/flaky.mp4") == 3
    assert "attempt 2 failed: HTTP 503" in caplog.text and "s3cr3t" not in caplog.text


def test_a_clip_copy_follows_no_redirect(tmp_path, server):
    server.route("/moved.mp4", send(json_reply({}, 302, Location=f"{server.base_url}/clip.mp4")))
    clips, stored = _clip_store(tmp_path, REHEARSAL, pause=0.01)
    clips.fetch_later("t1", f"{server.base_url}/moved.mp4", "k" * 20, owner=1)
    assert stored.get(timeout=10) == ("t1", None)
    clips.close()
    assert server.count("/moved.mp4") == 3 and server.count("/clip.mp4") == 0


# -- webhook pushes ----------------------------------------------------------------------------


class _Held:
    """A receiver route that records each push and answers only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.bodies: list[dict] = []
        self.arrived = threading.Semaphore(0)

    def __call__(self, handler) -> None:
        self.bodies.append(json.loads(handler.server.owner.seen[-1].body))
        self.arrived.release()
        self.release.wait(60)
        handler.wfile.write(json_reply({"ok": True}))


def _row(owner: int, task_id: str, state: str = "submitted", percentage: int = 0) -> JobRow:
    status = {"submitted": "processing", "failed": "failed"}[state]
    return JobRow(owner, task_id, state, status, percentage, None, None, None, None)


def test_a_receiver_that_never_answers_delays_only_its_owners_pushes(server):
    held = _Held()
    server.route("/never", held)
    fine = threading.Event()
    server.route("/fine", lambda handler: (fine.set(), handler.wfile.write(json_reply({}))))
    hooks = ParticipantWebhooks(lambda: "http://gateway", REHEARSAL, deadline=60.0)
    try:
        for task_id in ("a1", "a2", "a3"):
            hooks.register(task_id, f"{server.base_url}/never", "s")
            hooks.deliver(_row(1, task_id, percentage=40))
        assert held.arrived.acquire(timeout=10)  # a1's push hangs, a2 and a3 wait their turn
        hooks.register("b1", f"{server.base_url}/fine", "s")
        hooks.deliver(_row(2, "b1", "failed"))
        assert fine.wait(10)  # while the hostile receiver still holds its push
        assert [b["task_id"] for b in held.bodies] == ["a1"]
        held.release.set()
        wait_for(lambda: len(held.bodies) == 3)
    finally:
        held.release.set()
        hooks.close()
    assert [b["task_id"] for b in held.bodies] == ["a1", "a2", "a3"]


def test_queued_progress_pushes_coalesce_so_the_newest_state_wins(server):
    held = _Held()
    server.route("/slow", held)
    hooks = ParticipantWebhooks(lambda: "http://gateway", REHEARSAL, deadline=60.0)
    try:
        hooks.register("t1", f"{server.base_url}/slow", "s")
        hooks.deliver(_row(1, "t1", percentage=10))
        assert held.arrived.acquire(timeout=10)
        for percentage in range(20, 100, 10):
            hooks.deliver(_row(1, "t1", percentage=percentage))
        hooks.deliver(_row(1, "t1", "failed"))
        held.release.set()
        wait_for(lambda: len(held.bodies) == 2)
    finally:
        hooks.close()
    assert [(b["status"], b["percentage"]) for b in held.bodies] == [
        ("processing", 10),
        ("failed", 0),
    ]


def test_a_participants_waiting_pushes_are_bounded(server, caplog):
    held = _Held()
    server.route("/slow", held)
    hooks = ParticipantWebhooks(lambda: "http://gateway", REHEARSAL, deadline=60.0)
    try:
        for n in range(OWNER_TASKS + 6):
            hooks.register(f"t{n}", f"{server.base_url}/slow", None)
            hooks.deliver(_row(1, f"t{n}"))
            if n == 0:
                assert held.arrived.acquire(timeout=10)
        held.release.set()
        wait_for(lambda: len(held.bodies) == 1 + OWNER_TASKS)
    finally:
        hooks.close()
    assert caplog.text.count("dropped") == 5


# -- a whole gateway -------------------------------------------------------------------------


def test_trickling_clips_delay_neither_another_submit_nor_a_stop(tmp_path):
    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    roster = Roster(open_engine(db))
    tokens = [roster.add(f"p{i}", Limits(jobs=1)) for i in range(17)]
    body = {"prompt": "p", "generation_type": "text2video"}
    with ApiServer() as api, HostileServer() as slow:
        clip = response_bytes(200, bytes(10**6), {"Content-Type": "video/mp4"})
        slow.route("/clip.mp4", trickle(clip, every=1.0))  # 1 byte a second
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"APIFRAME_API_KEY": TEST_API_KEY, "RUNWAY_WIDGET_HOME": str(tmp_path)}
        args = ("--db", db, "--upstream", api.base_url, "--allow-private-webhooks")
        process = serve_process(port, *args, env=env, log=tmp_path / "gateway.log")
        try:
            for token in tokens[:16]:
                reply = requests.post(
                    f"{base}/runway-imagine",
                    json=body,
                    headers={"Authorization": token},
                    timeout=10,
                )
                finished = {"status": "finished", "percentage": 100}
                api.add_task(
                    upstream_id(db, reply.json()["task_id"]),
                    {**finished, "video_url": f"{slow.base_url}/clip.mp4"},
                )
            wait_for(lambda: slow.count("/clip.mp4") >= 4, "the clip lane all trickles", 30)
            reply = requests.post(
                f"{base}/runway-imagine",
                json=body,
                headers={"Authorization": tokens[16]},
                timeout=10,
            )
            assert reply.status_code == 200 and reply.json()["task_id"]
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            process.wait(30)
            stopping = time.monotonic() - started
        finally:
            stop_process(process)
    assert stopping < 5  # no worker joined while a clip still trickles


def test_without_the_queue_a_full_submission_lane_answers_503_at_once_with_nothing_reserved(
    tmp_path,
):
    with ApiServer() as api:
        api.script("/runway-imagine", Reply(200, json={"task_id": "slow"}, delay=2.0))
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        upstream = Upstream(client, workers=1, waiting=1)
        with gateway_on(upstream, tmp_path, queue=False) as gateway:
            people = [participant(gateway, tmp_path, jobs=1) for _ in range(3)]
            body = {"prompt": "p", "generation_type": "text2video"}
            replies: dict[int, requests.Response] = {}

            def submit(n: int) -> None:
                replies[n] = call(gateway, "POST", "/runway-imagine", people[n].api_key, json=body)

            first = threading.Thread(target=submit, args=(0,))
            first.start()
            wait_for(lambda: api.count("/runway-imagine") == 1)  # the worker is taken
            second = threading.Thread(target=submit, args=(1,))
            second.start()
            wait_for(lambda: upstream.waiting == 1)
            submit(2)
            refused = replies[2]
            assert refused.status_code == 503 and refused.headers.get("Retry-After")
            assert "nothing was submitted" in refused.json()["errors"][0]["msg"]
            first.join(30)
            second.join(30)
            assert [replies[n].status_code for n in (0, 1)] == [200, 200]
            used = {row["name"]: row["jobs_used"] for row in gateway.report()}
        assert api.count("/runway-imagine") == 2
    assert sorted(used.values()) == [0, 1, 1]


def test_with_the_queue_a_slow_upstream_holds_up_no_submission_and_loses_none(tmp_path):
    with ApiServer() as api:
        api.script("/runway-imagine", Reply(200, json={"task_id": "slow"}, delay=2.0))
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        upstream = Upstream(client, workers=1, waiting=1)  # room for two sends at a time
        with gateway_on(upstream, tmp_path, upstream_concurrency=5) as gateway:
            people = [participant(gateway, tmp_path, jobs=1) for _ in range(4)]
            body = {"prompt": "p", "generation_type": "text2video"}
            took = []
            for person in people:
                started = time.monotonic()
                reply = call(gateway, "POST", "/runway-imagine", person.api_key, json=body)
                took.append(time.monotonic() - started)
                assert reply.status_code == 200
            wait_for(lambda: api.count("/runway-imagine") == 4, timeout=30)  # none lost
            report = gateway.report()
    assert max(took) < 1.0  # answered from the reservation, not after the slow upstream
    assert [row["unknown"] + row["refused"] for row in report] == [0, 0, 0, 0]
