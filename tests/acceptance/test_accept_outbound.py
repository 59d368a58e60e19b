"""What a gateway fetches or posts to at addresses someone else chose: only what the rule allows.

A server on the gateway machine's loopback (``inside``) stands for what no participant and
no provider may reach through the gateway: it must never see a request. Participants choose
webhook URLs and the demo's inputs; a hostile upstream chooses clip URLs and sends text no
database stores.
"""

from __future__ import annotations

import time

import pytest
from hostile_peers import CLIP, inside_host
from running_gateway import ACCEPTANCE, ended, running_gateway

from tests.api_server import TEST_API_KEY, ApiServer

pytestmark = ACCEPTANCE

@pytest.fixture(scope="module")
def inside():
    with inside_host() as server:
        yield server
        assert server.count() == 0, [seen.path for seen in server.seen]


@pytest.fixture(scope="module")
def demo_room(tmp_path_factory, inside):
    folder = tmp_path_factory.mktemp("demo-room")
    env = {"RUNWAY_WIDGET_DEMO_SECONDS": "1"}
    with running_gateway(folder, "--upstream", "demo", env=env) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def upstream():
    with ApiServer() as api:
        api.files["/clips/own.mp4"] = CLIP
        yield api


@pytest.fixture(scope="module")
def provider_room(tmp_path_factory, upstream, inside):
    folder = tmp_path_factory.mktemp("provider-room")
    env = {"APIFRAME_API_KEY": TEST_API_KEY}
    with running_gateway(folder, "--upstream", upstream.base_url, env=env) as gateway:
        yield gateway


def _submitted(room, upstream: ApiServer, token: str) -> tuple[str, str]:
    """A job submitted through the room, once its queue sent it: the participant's task id,
    and the upstream's (the newest task the upstream made)."""
    before = upstream.count("/runway-imagine")
    task_id = room.submit(token)
    deadline = time.monotonic() + 20
    while upstream.count("/runway-imagine") == before or len(upstream.tasks) <= before:
        assert time.monotonic() < deadline, "the gateway's queue never sent the job"
        time.sleep(0.02)
    return task_id, list(upstream.tasks)[-1]


def _webhook_forms(port: int) -> list[str]:
    """Ways to write an address on the gateway's own machine, or its cloud's metadata."""
    forms = [
        f"http://127.0.0.1:{port}\\@93.184.216.34/admin/reset?confirm=1",
        f"http://93.184.216.34@127.0.0.1:{port}/hook",
        f"http://user:pw@127.0.0.1:{port}/hook",
        f"http://127.0.0.1:{port}/hook",
        f"http://localhost:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"http://0x7f000001:{port}/hook",
        f"http://0177.0.0.1:{port}/hook",
        f"http://[::1]:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://[::ffff:7f00:1]:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://127.0.0.1:{port}/hook\r\nX-Injected: 1",
        f"http://127.0.0.1:{port} /hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/latest/meta-data",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
    ]
    return forms


def test_every_form_of_an_inside_webhook_is_refused_at_submit(demo_room, inside):
    token = demo_room.token("ann", "--jobs", "2")
    port = int(inside.base_url.rsplit(":", 1)[1])
    for url in _webhook_forms(port):
        body = {"prompt": "p", "generation_type": "text2video", "webhook_url": url}
        reply = demo_room.call("POST", "/runway-imagine", token, json=body)
        assert reply.status_code == 400, (url, reply.text)
        assert reply.json()["errors"][0]["code"] in ("webhook_target_refused", "invalid_request")
    account = demo_room.call("GET", "/account", token)
    if account.status_code == 429:  # twenty refusals in a row spent the rate limit's burst
        time.sleep(float(account.headers["Retry-After"]))
        account = demo_room.call("GET", "/account", token)
    assert account.json()["jobs_left"] == 2  # nothing reserved


@pytest.mark.parametrize(
    "fields",
    [
        {"generation_type": "image2video", "image_url": "{inside}/image.jpg"},
        {"generation_type": "video2video", "video_url": "{inside}/clip.mp4"},
    ],
)
def test_the_demos_inputs_are_never_fetched_from_the_gateways_loopback(demo_room, inside, fields):
    token = demo_room.token(f"bob-{fields['generation_type']}", "--jobs", "1")
    fields = {k: v.format(inside=inside.base_url) for k, v in fields.items()}
    task_id = demo_room.submit(token, **fields, duration=5)
    task = demo_room.fetch_until(token, task_id, ended)
    assert task["status"] == "failed" and "loopback" in task.get("message", ""), task


def test_a_providers_clip_inside_the_gateways_network_is_never_copied_nor_served(
    provider_room, upstream, inside
):
    token = provider_room.token("cy", "--jobs", "6")
    handed = {
        f"{inside.base_url}/clip.mp4": f"{inside.base_url}/clip.mp4",
        "http://169.254.169.254/latest/meta-data/iam": "http://169.254.169.254/latest/meta-data/iam",
        "javascript:alert(document.cookie)": None,
        "file:///etc/passwd": None,
        f"{upstream.base_url}/clips/own.mp4": "copied",  # the upstream's own origin
    }
    task_ids = {}
    for video_url in handed:  # all sent first: the gateway follows them together
        task_id, sent = _submitted(provider_room, upstream, token)
        upstream.add_task(sent, {"status": "finished", "percentage": 100, "video_url": video_url})
        task_ids[video_url] = task_id
    for video_url, expected in handed.items():
        task = provider_room.fetch_until(token, task_ids[video_url], ended)
        assert task["status"] == "finished", task
        if expected == "copied":
            assert task["video_url"].startswith(provider_room.base_url + "/videos/")
            assert (
                provider_room.call("GET", task["video_url"][len(provider_room.base_url) :]).content
                == CLIP
            )
        else:
            assert task["video_url"] == expected, video_url


def test_one_lone_surrogate_from_upstream_freezes_nobody_elses_task(provider_room, upstream):
    broken, fine = provider_room.token("dan"), provider_room.token("em")
    (broken_id, broken_sent), (fine_id, fine_sent) = (
        _submitted(provider_room, upstream, broken),
        _submitted(provider_room, upstream, fine),
    )
    upstream.add_task(
        broken_sent, {"status": "processing", "percentage": "40", "message": "a\ud83cb"}
    )
    upstream.add_task(
        fine_sent,
        {"status": "processing", "percentage": "50"},
        {
            "status": "finished",
            "percentage": 100,
            "video_url": f"{upstream.base_url}/clips/own.mp4",
        },
    )
    assert provider_room.fetch_until(fine, fine_id, ended)["status"] == "finished"
    seen = provider_room.fetch_until(broken, broken_id, lambda task: task["percentage"] == 40)
    assert seen["status"] == "processing" and seen["percentage"] == 40
    assert "\ud83c" not in seen.get("message", "")
    assert "Traceback" not in provider_room.log_text()
