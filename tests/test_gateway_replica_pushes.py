"""A participant's webhook is pushed by the process that holds it, whichever process moves the
task on: changes another gateway process writes to the ledger are pushed once each, and the
last one ends the target.

In this process: a gateway (not serving: its watch is called directly) and, on the same
database, the ledger and queue of "another process" writing what a replica that sends and
follows the job writes, on a fake clock. Then two real ``gateway serve`` processes on one
PostgreSQL, where the one that took the submission cannot reach the upstream, so the other
sends and follows the job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import event

from runway_widget.gateway.app import GatewayServer
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.ledger import Ledger, Reservation
from runway_widget.gateway.db.queue import JobQueue
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.upstream import Upstream
from runway_widget.models import Task
from tests.api_server import TEST_API_KEY, ApiServer, Reply
from tests.fake_clock import FakeClock
from tests.gateway_support import (
    free_port,
    needs_postgres,
    postgres_server,
    serve_process,
    stop_process,
    upstream_client,
)
from tests.hostile_server import HostileServer, json_reply, send
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

JOB = {"prompt": "a harbour at dawn", "generation_type": "text2video"}
OTHER = "0123456789abcdef"  # the id of the process that sends and follows the jobs


class Peer:
    """What another gateway process writes to the shared ledger for a job it sends."""

    def __init__(self, db: str, clock: FakeClock) -> None:
        self.engine = open_engine(db)
        self.ledger = Ledger(self.engine, clock)
        self.queue = JobQueue(self.engine, clock)

    def sends(self, reserved: Reservation, upstream_id: str) -> None:
        self.queue.claim(OTHER)  # the queue's next jobs, this one among them
        assert self.ledger.accepted(reserved.job_id, upstream_id, OTHER)

    def polled(self, upstream_id: str, status: str, **state: object) -> None:
        task = Task(upstream_id, status, **state)  # type: ignore[arg-type]
        assert not self.ledger.update_tasks([task]).retry


@pytest.fixture
def hook() -> Iterator[HostileServer]:
    with HostileServer() as receiver:
        receiver.route("/hook", send(json_reply({"ok": True})))
        yield receiver


def _pushed(receiver: HostileServer) -> list[tuple[str, str, object]]:
    bodies = [json.loads(seen.body) for seen in receiver.seen if seen.path == "/hook"]
    return [(body["task_id"], body["status"], body["percentage"]) for body in bodies]


def test_changes_another_process_writes_are_pushed_once_and_the_last_ends_the_target(
    tmp_path, hook
):
    clock = FakeClock()
    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    upstream = Upstream(upstream_client("http://127.0.0.1:9", TEST_API_KEY, tmp_path))
    gateway = GatewayServer(
        db=db, upstream=upstream, home=tmp_path, allow_private_webhooks=True, clock=clock
    )
    peer = Peer(db, clock)
    url = f"{hook.base_url}/hook"
    statements: list[str] = []
    event.listen(gateway.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        alice = Roster(gateway.engine).authenticate(gateway.add_participant("alice"))
        assert alice is not None
        first, second = (peer.ledger.reserve(alice.id, 5, JOB) for _ in range(2))
        statements.clear()
        assert gateway.peer_changes.look() == 0 and statements == []  # no target held

        gateway.webhooks.register(first.task_id, url, "s")
        assert gateway.peer_changes.look() == 1  # queued: what the submission's answer said
        peer.sends(first, "up-1")
        clock.advance(1)
        peer.polled("up-1", "staged", percentage=0)
        assert gateway.peer_changes.look() == 1  # sent, staged upstream: nothing new

        peer.polled("up-1", "processing", percentage=40)
        gateway.peer_changes.look()
        wait_for(lambda: hook.count("/hook") == 1, "the first push")
        gateway.peer_changes.look()  # the same row again: no push (the next one shows it)
        gateway.webhooks.register(second.task_id, url, "s")
        peer.sends(second, "up-2")
        peer.polled("up-2", "processing", percentage=10)
        assert gateway.peer_changes.look() == 2
        wait_for(lambda: hook.count("/hook") == 2, "the second task's push")
        assert _pushed(hook) == [
            (first.task_id, "processing", 40),
            (second.task_id, "processing", 10),  # queued behind any repeat of the first's
        ]

        clock.advance(1)
        peer.polled("up-1", "finished", percentage=100, video_url="https://cdn.test/1.mp4")
        gateway.peer_changes.look()  # finished, its clip not copied yet
        wait_for(lambda: hook.count("/hook") == 3, "the push while the clip is copied")
        third = peer.ledger.reserve(alice.id, 5, JOB)
        gateway.webhooks.register(third.task_id, url, "s")
        peer.ledger.video_stored(first.task_id, str(tmp_path / "1.mp4"))
        peer.polled("up-2", "failed", message="blocked by moderation")
        assert peer.ledger.cancel(alice.id, third.task_id) is not None  # withdrawn elsewhere
        assert gateway.peer_changes.look() == 3
        wait_for(lambda: hook.count("/hook") == 6, "the last pushes")
        assert gateway.webhooks.task_ids() == []  # all ended: nothing is read any more
        statements.clear()
        assert gateway.peer_changes.look() == 0 and statements == []
        stored = peer.ledger.job(first.task_id)
    finally:
        gateway.stop()
        peer.engine.dispose()
    pushed = _pushed(hook)
    assert pushed[2] == (first.task_id, "processing", 99)
    assert sorted(pushed[3:]) == sorted(
        [
            (first.task_id, "finished", 100),
            (second.task_id, "failed", None),
            (third.task_id, "failed", 0),
        ]
    )
    bodies = {json.loads(seen.body)["status"]: json.loads(seen.body) for seen in hook.seen}
    assert stored is not None
    assert bodies["finished"]["video_url"] == f"{gateway.base_url}/videos/{stored.video_key}.mp4"
    assert {seen.headers["x-webhook-secret"] for seen in hook.seen} == {"s"}


# -- two processes on one PostgreSQL ---------------------------------------------------------


@needs_postgres
def test_a_job_the_other_replica_sends_and_follows_is_pushed_by_the_one_that_took_it(
    tmp_path, hook
):
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(4096)
    with postgres_server() as db, ApiServer() as good, ApiServer() as down:
        good.run_jobs(1.0, video)
        # the replica that takes the submission cannot reach the upstream: the other sends it
        down.script("/runway-imagine", *[Reply(503, headers={"Retry-After": "1"})] * 100)
        env = {"APIFRAME_API_KEY": TEST_API_KEY}
        common = ("--db", db, "--allow-private-webhooks", "--clips", str(tmp_path / "clips"))
        processes = []
        try:
            ports = {}
            for name, upstream in (("a", down), ("b", good)):
                home = tmp_path / name
                home.mkdir()
                ports[name] = free_port()
                processes.append(
                    serve_process(
                        ports[name],
                        *common,
                        "--upstream",
                        upstream.base_url,
                        env={**env, "RUNWAY_WIDGET_HOME": str(home)},
                        log=tmp_path / f"{name}.log",
                    )
                )
            a = f"http://127.0.0.1:{ports['a']}"
            engine = open_engine(db)
            token = Roster(engine).add("alice", Limits(jobs=1))
            engine.dispose()
            body = {**JOB, "webhook_url": f"{hook.base_url}/hook", "webhook_secret": "s"}
            sent = requests.post(
                f"{a}/runway-imagine", json=body, headers={"Authorization": token}, timeout=10
            )
            assert sent.status_code == 200, sent.text
            task_id = sent.json()["task_id"]
            wait_for(lambda: any(s == "finished" for _, s, _ in _pushed(hook)), "the push", 60)
            fetched = requests.post(
                f"{a}/fetch",
                json={"task_id": task_id},
                headers={"Authorization": token},
                timeout=10,
            ).json()
            clip = requests.get(fetched["video_url"], timeout=10).content
        finally:
            for process in processes:
                stop_process(process)
    assert good.count("/runway-imagine") == 1
    assert down.count("/fetch") == 0 and down.count("/fetch-many") == 0  # a never followed it
    pushed = [json.loads(seen.body) for seen in hook.seen]
    assert all(push["task_id"] == task_id for push in pushed)
    states = [(push["status"], push["percentage"]) for push in pushed]
    assert len(states) == len(set(states))  # no state pushed twice
    final = pushed[-1]
    assert final["status"] == "finished" and final == fetched
    assert final["video_url"].startswith(f"{a}/videos/") and clip == video
