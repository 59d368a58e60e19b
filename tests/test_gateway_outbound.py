"""Where the outbound rule holds in a running gateway: webhooks, clip copies, the demo's inputs."""

from __future__ import annotations

import time

import pytest
from hostile_peers import CLIP, inside_host

from runway_widget.gateway.upstream import Upstream
from tests.api_server import TEST_API_KEY, ApiServer
from tests.gateway_support import (
    call,
    demo_gateway,
    gateway_on,
    participant,
    upstream_client,
    upstream_id,
)

pytestmark = pytest.mark.timeout(120)

@pytest.fixture
def hostile():
    with inside_host() as bad:
        yield bad


def _fetch_until_done(gateway, token, task_id, seconds=60.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        task = call(gateway, "POST", "/fetch", token, json={"task_id": task_id}).json()
        if (task["status"] in ("finished", "failed") and task["percentage"] == 100) or (
            task["status"] == "failed" or time.monotonic() > deadline
        ):
            return task
        time.sleep(0.1)


# -- webhooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("allow_private", [False, True])
def test_the_backslash_and_at_sign_trick_is_refused_at_submit(tmp_path, hostile, allow_private):
    port = hostile.base_url.rsplit(":", 1)[1]
    with demo_gateway(tmp_path, allow_private_webhooks=allow_private) as gateway:
        token = participant(gateway, tmp_path, jobs=2).api_key
        for url in (
            f"http://127.0.0.1:{port}\\@93.184.216.34/admin/reset?confirm=1",
            f"http://93.184.216.34@127.0.0.1:{port}/hook",
        ):
            body = {"prompt": "p", "generation_type": "text2video", "webhook_url": url}
            reply = call(gateway, "POST", "/runway-imagine", token, json=body)
            assert reply.status_code == 400, reply.text
            assert reply.json()["errors"][0]["msg"].startswith("webhook_url must not")
        assert call(gateway, "GET", "/account", token).json()["jobs_left"] == 2
        assert gateway.upstream.demo.stats.get("/runway-imagine", 0) == 0
    assert hostile.count() == 0


def test_cgnat_and_metadata_webhooks_are_refused_even_in_a_rehearsal(tmp_path):
    with demo_gateway(tmp_path, allow_private_webhooks=True) as gateway:
        token = participant(gateway, tmp_path, jobs=2).api_key
        for url, rule in [
            ("http://100.100.100.200/latest/meta-data", "carrier-grade NAT"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
        ]:
            body = {"prompt": "p", "generation_type": "text2video", "webhook_url": url}
            reply = call(gateway, "POST", "/runway-imagine", token, json=body)
            assert reply.status_code == 400 and rule in reply.json()["errors"][0]["msg"]


# -- clip copies from a hostile upstream -------------------------------------------------------


def test_a_providers_clip_url_inside_the_gateways_network_is_never_copied(tmp_path, hostile):
    with ApiServer() as api:
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path) as gateway:
            token = participant(gateway, tmp_path, jobs=5).api_key
            urls = {
                f"{hostile.base_url}/clip.mp4": f"{hostile.base_url}/clip.mp4",
                "http://169.254.169.254/latest/meta-data/iam": (
                    "http://169.254.169.254/latest/meta-data/iam"
                ),
                "javascript:alert(document.cookie)": None,
                "file:///etc/passwd": None,
                f"{api.base_url}/clips/own.mp4": "copied",  # the upstream's own origin
            }
            api.files["/clips/own.mp4"] = CLIP
            body = {"prompt": "p", "generation_type": "text2video"}
            for video_url, handed in urls.items():
                task_id = call(gateway, "POST", "/runway-imagine", token, json=body).json()[
                    "task_id"
                ]
                api.add_task(
                    upstream_id(gateway, task_id),
                    {"status": "finished", "percentage": 100, "video_url": video_url},
                )
                task = _fetch_until_done(gateway, token, task_id)
                assert task["status"] == "finished"
                if handed == "copied":
                    assert task["video_url"].startswith(gateway.base_url + "/videos/")
                else:
                    assert task["video_url"] == handed, video_url
    assert hostile.count() == 0
    assert [p.name.endswith(".mp4") for p in (tmp_path / "gateway-videos").iterdir()] == [True]


# -- the demo backend's inputs -----------------------------------------------------------------


@pytest.mark.parametrize("allow_private", [False, True])
def test_with_the_demo_upstream_participants_inputs_follow_the_rule(
    tmp_path, hostile, allow_private
):
    with demo_gateway(tmp_path, allow_private_webhooks=allow_private) as gateway:
        token = participant(gateway, tmp_path, jobs=2).api_key
        body = {
            "prompt": "p",
            "generation_type": "image2video",
            "image_url": f"{hostile.base_url}/image.jpg",
            "duration": 5,
        }
        task_id = call(gateway, "POST", "/runway-imagine", token, json=body).json()["task_id"]
        task = _fetch_until_done(gateway, token, task_id)
    if allow_private:
        assert task["status"] == "finished" and hostile.count("/image.jpg") == 1
    else:
        assert task["status"] == "failed" and "loopback" in task.get("message", "")
        assert hostile.count() == 0
