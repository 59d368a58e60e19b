"""One contract, two backends: the client behaves the same on the demo server and on the
scriptable test server, so what the demo teaches holds against the real API shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
from api_server import ApiServer

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.errors import AuthenticationError, TaskNotFoundError, ValidationError
from runway_widget.models import GenerationRequest
from runway_widget.store import JobStore


def png_bytes() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (32, 18), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Backend:
    name: str
    base_url: str
    api_key: str
    client: ApiframeClient
    run_to_end: Callable[[str], None]  # make a submitted task finish (the demo does it alone)


@pytest.fixture(params=["test-server", "demo"])
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[Backend]:
    store = JobStore(tmp_path / "jobs.jsonl")
    if request.param == "demo":
        from runway_widget.demo import DemoServer

        with DemoServer(job_seconds=1.0) as demo:
            client = ApiframeClient(demo.api_key, demo.base_url, store=store,
                                    requests_per_second=50)
            yield Backend("demo", demo.base_url, demo.api_key, client, lambda task_id: None)
            client.close()
        return
    with ApiServer() as api:
        def run_to_end(task_id: str) -> None:
            api.add_task(
                task_id,
                {"status": "processing", "percentage": "50"},
                {"status": "finished", "percentage": 100,
                 "video_url": f"{api.base_url}/videos/{task_id}.mp4"},
            )

        client = ApiframeClient(api.api_key, api.base_url, store=store, requests_per_second=50)
        yield Backend("test-server", api.base_url, api.api_key, client, run_to_end)
        client.close()


def submit(backend: Backend, prompt: str = "a lighthouse in a storm") -> str:
    return backend.client.imagine(GenerationRequest(prompt=prompt, aspect_ratio="16:9",
                                                    duration=5))


def test_submit_fetch_and_wait_end_with_a_video(backend: Backend) -> None:
    task_id = submit(backend)
    first = backend.client.fetch(task_id)
    assert first.task_id == task_id and not first.is_done
    assert first.percentage is None or 0 <= first.percentage <= 100

    backend.run_to_end(task_id)
    seen = []
    done = backend.client.wait(task_id, timeout=30, poll_interval=0.1, on_progress=seen.append)
    assert done.is_finished and done.percentage == 100
    assert done.video_url.startswith(backend.base_url)
    assert seen[-1] == done
    assert backend.client.store.get(task_id).request["prompt"] == "a lighthouse in a storm"


def test_fetch_many_keeps_order_and_repeats(backend: Backend) -> None:
    ids = [submit(backend, f"prompt {n}") for n in range(3)]
    asked = [ids[2], ids[0], ids[1], ids[2]]
    assert [task.task_id for task in backend.client.fetch_many(asked)] == asked


def test_unknown_task_is_not_found_and_left_out_of_batches(backend: Backend) -> None:
    known = submit(backend)
    with pytest.raises(TaskNotFoundError):
        backend.client.fetch("no-such-task")
    assert set(backend.client.fetch_batch([known, "no-such-task"])) == {known}
    assert backend.client.fetch_batch(["no-such-task"]) == {}


def test_wrong_key_is_an_authentication_error_that_hides_the_key(backend: Backend) -> None:
    wrong = ApiframeClient("sk-wrong-key-Y7mQ", backend.base_url, requests_per_second=50)
    with pytest.raises(AuthenticationError) as caught:
        wrong.account()
    assert "sk-wrong-key-Y7mQ" not in str(caught.value)
    wrong.close()


def test_server_validation_names_every_problem(backend: Backend) -> None:
    reply = requests.post(
        backend.base_url + "/runway-imagine",
        json={"prompt": "", "generation_type": "image2video", "duration": 7},
        headers={"Authorization": backend.api_key},
        timeout=10,
    )
    assert reply.status_code == 400
    messages = [error["msg"] for error in reply.json()["errors"]]
    assert len(messages) == 3
    assert any("prompt" in m for m in messages) and any("image_url" in m for m in messages)


@pytest.mark.parametrize("count", [1, 21])
def test_fetch_many_accepts_two_to_twenty_ids(backend: Backend, count: int) -> None:
    reply = requests.post(
        backend.base_url + "/fetch-many",
        json={"task_ids": [f"id-{n}" for n in range(count)]},
        headers={"Authorization": backend.api_key},
        timeout=10,
    )
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["msg"]


def test_account_and_upload(backend: Backend) -> None:
    info = backend.client.account()
    assert {"email", "credits", "total_images", "plan"} <= set(info)
    url = backend.client.upload_image(png_bytes())
    assert url.startswith("http")


def test_a_rejected_request_is_a_validation_error_from_the_server(backend: Backend) -> None:
    reply = requests.post(
        backend.base_url + "/runway-imagine",
        json={"prompt": "x", "generation_type": "text2video", "video_url": "http://a/b.mp4"},
        headers={"Authorization": backend.api_key},
        timeout=10,
    )
    assert reply.status_code == 400
    with pytest.raises(ValidationError):
        backend.client.imagine(prompt="x", generation_type="text2video",
                               video_url="http://a/b.mp4")
