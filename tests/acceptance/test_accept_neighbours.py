"""One participant cannot slow another: a rehearsal gateway (``--allow-private-webhooks``) on a
demo backend whose fault hook puts a participant's clips on a host that sends a byte a second.

The neighbour's clips trickle and its webhook receiver never answers; another participant's
submission is answered and their "finished" push arrives while the neighbour's first clip is
still trickling (its other clips wait their owner's turn) and its pushes are still held.
"""

from __future__ import annotations

import time

import pytest
from hostile_peers import CLIP_PATH, ArrivalLog, BlackHole, trickling_clip
from running_gateway import ACCEPTANCE, ended, running_gateway

from runway_widget.demo import DemoServer

pytestmark = ACCEPTANCE

MARKER = "[trickle]"


@pytest.fixture(scope="module")
def demo():
    with DemoServer(job_seconds=1.0) as server:
        yield server


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, demo):
    folder = tmp_path_factory.mktemp("rehearsal")
    args = ("--upstream", demo.base_url, "--allow-private-webhooks")
    with running_gateway(folder, *args, env={"APIFRAME_API_KEY": demo.api_key}) as gateway:
        yield gateway


def _until(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_trickling_clips_and_a_silent_receiver_delay_only_their_owner(rehearsal, demo):
    neighbour = rehearsal.token("mallory", "--jobs", "4", "--concurrent", "4")
    other = rehearsal.token("nina", "--jobs", "1")
    with trickling_clip(every=1.0) as clips, BlackHole() as hole, ArrivalLog() as receiver:
        demo.faults.elsewhere_marker = MARKER
        demo.faults.elsewhere_video_url = clips.base_url + CLIP_PATH
        hook = {"webhook_url": hole.url, "webhook_secret": "s"}
        for _ in range(4):
            rehearsal.submit(neighbour, prompt=f"a lighthouse {MARKER}", **hook)
        assert _until(lambda: clips.count(CLIP_PATH) == 1 and hole.taken >= 1)
        # its first clip trickles, its pushes hang: now someone else's job
        started = clips.seen[0]
        task_id = rehearsal.submit(
            other, webhook_url=receiver.url("nina"), webhook_secret="nina-secret"
        )
        assert _until(lambda: task_id in receiver.first("finished"))
        assert rehearsal.fetch_until(other, task_id, ended)["video_url"].startswith(
            rehearsal.base_url + "/videos/"
        )
        assert clips.seen == [started]  # still its first copy; the others wait their turn
        demo.faults.reset()


def test_metadata_and_cgnat_webhooks_are_refused_even_in_a_rehearsal(rehearsal):
    token = rehearsal.token("oz", "--jobs", "1")
    for url, rule in [
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://100.100.100.200/latest/meta-data", "carrier-grade NAT"),
    ]:
        body = {"prompt": "p", "generation_type": "text2video", "webhook_url": url}
        reply = rehearsal.call("POST", "/runway-imagine", token, json=body)
        assert reply.status_code == 400 and rule in reply.json()["errors"][0]["msg"], reply.text
