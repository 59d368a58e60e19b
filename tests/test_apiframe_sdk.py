"""Fidelity: APIFRAME's official Python SDK (``apiframe-sdk``) runs whole jobs on the demo backend.

The SDK is written against the real service, so what it does here is what a user of the
real service would see: it sends ``Authorization: Bearer <key>``, normalises ``finished`` to
``completed`` and ``percentage`` to ``progress``, and raises its own errors on 4xx.
(Its ``media.upload`` is left out: it labels the multipart body ``application/json``.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

apiframe = pytest.importorskip(
    "apiframe", reason='the fidelity test needs the official SDK: pip install "apiframe-sdk"'
)
pytest.importorskip("av", reason="the demo backend needs PyAV")

from apiframe.exceptions import ApiframeError as SdkError  # noqa: E402
from apiframe.exceptions import AuthenticationError as SdkAuthenticationError  # noqa: E402

from runway_widget.demo import DemoServer  # noqa: E402


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    with DemoServer(job_seconds=1.0) as server:
        yield server


@pytest.fixture
def sdk(demo):
    with apiframe.Apiframe(api_key=demo.api_key, base_url=demo.base_url, timeout=30) as client:
        yield client


def test_the_sdk_sends_the_bearer_form(sdk):
    assert sdk._http_client.session.headers["Authorization"].startswith("Bearer ")


def test_a_text2video_job_from_submit_through_progress_to_a_playable_video(sdk):
    task = sdk.runway.text_to_video(
        "a lighthouse in a storm", {"model": "gen3a_turbo", "duration": 5, "aspect_ratio": "16:9"}
    )
    assert task["task_id"] == task["id"]
    progress: list[int] = []
    result = sdk.tasks.wait_for(task["id"], on_progress=progress.append, interval=0.1, timeout=60)
    assert result["status"] == "completed"  # the SDK's name for "finished"
    assert result["task_type"] == "runway"
    assert progress == sorted(progress) and progress[-1] == 100
    assert any(0 < p < 100 for p in progress), "the SDK saw the job part-way"
    video = requests.get(result["video_url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"


def test_an_image2video_job_from_a_bundled_sample(demo, sdk):
    task = sdk.runway.image_to_video(
        demo.sample_url("lighthouse.png"), "slow push-in", {"duration": 5}
    )
    result = sdk.tasks.wait_for(task["id"], interval=0.1, timeout=60)
    assert result["status"] == "completed" and result["video_url"]


def test_fetch_many_and_the_account(sdk):
    ids = [sdk.runway.text_to_video(f"clip {i}")["id"] for i in range(3)]
    many = sdk.tasks.get_many(ids)
    assert [task["id"] for task in many["tasks"]] == ids
    assert all(task["status"] in {"staged", "starting", "processing"} for task in many["tasks"])
    account = sdk.tasks.get_account_info()
    assert set(account) >= {"email", "credits", "total_images", "plan"}
    assert account["total_images"] >= 3


def test_a_bad_request_is_the_sdks_400_error(sdk):
    with pytest.raises(SdkError) as caught:
        sdk.runway.generate({"prompt": "", "generation_type": "image2video"})
    assert caught.value.status == 400
    assert "prompt" in str(caught.value) and "image_url" in str(caught.value)


def test_a_failed_job_is_the_sdks_failure(sdk):
    task = sdk.runway.text_to_video("something forbidden")
    with pytest.raises(Exception, match="content moderation"):
        sdk.tasks.wait_for(task["id"], interval=0.1, timeout=60)


def test_a_wrong_key_is_the_sdks_authentication_error(demo):
    client = apiframe.Apiframe(api_key="not-the-key", base_url=demo.base_url)
    with client, pytest.raises(SdkAuthenticationError):
        client.tasks.get_account_info()
