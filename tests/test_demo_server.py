"""The demo backend over real HTTP on 127.0.0.1, driven with `requests`.

Its jobs run on the fake clock (a 20 s job ends as soon as the test moves time and the
clip is rendered); webhook pushes, which run on their own threads, use the real one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from raw_sockets import idle_connections, peak_thread_growth, raw_exchange, status_of

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from runway_widget.demo import (  # noqa: E402
    DEMO_API_KEY,
    DemoFaults,
    DemoServer,
    shared_demo_server,
)
from runway_widget.models import GenerationRequest  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

T2V = {"prompt": "a lighthouse in a storm", "generation_type": "text2video"}


@pytest.fixture
def server(clock) -> Iterator[DemoServer]:
    with DemoServer(job_seconds=20, clock=clock) as demo:
        yield demo


@pytest.fixture
def live_server() -> Iterator[DemoServer]:
    """Jobs on the real clock, for what runs on threads of the server's own (webhooks)."""
    with DemoServer(job_seconds=1.0) as demo:  # 10 % steps 0.1 s apart, each pushed
        yield demo


class Api:
    """A thin `requests` wrapper speaking to one demo server with its key."""

    def __init__(self, demo: DemoServer, key: str | None = DEMO_API_KEY) -> None:
        self.demo = demo
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = key

    def post(self, path: str, body: object = None, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.post(self.demo.base_url + path, json=body, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.get(self.demo.base_url + path, **kwargs)

    def imagine(self, **fields) -> str:
        response = self.post("/runway-imagine", {**T2V, **fields})
        assert response.status_code == 200, response.text
        return response.json()["task_id"]

    def fetch(self, task_id: str) -> dict:
        response = self.post("/fetch", {"task_id": task_id})
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, task_id: str, timeout: float = 30.0) -> list[dict]:
        """Every state seen, polling each second of the server's clock (a fake one is moved
        on, up to 99 %), until the task is done (its clip rendered: that takes real time)."""
        seen: list[dict] = []
        deadline = time.monotonic() + timeout
        move = getattr(self.demo.clock, "advance", None)
        while time.monotonic() < deadline:
            seen.append(self.fetch(task_id))
            if seen[-1]["status"] in ("finished", "failed"):
                return seen
            if move is not None and seen[-1].get("percentage") != "99":
                move(1.0)
            time.sleep(0.01 if move is not None else 0.03)
        raise AssertionError(f"task {task_id} not done after {timeout}s: {seen[-1]}")


@pytest.fixture
def api(server) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.session.close()


@pytest.fixture
def live_api(live_server) -> Iterator[Api]:
    client = Api(live_server)
    yield client
    client.session.close()


def errors(response: requests.Response) -> list[str]:
    body = response.json()
    assert set(body) == {"errors"}
    return [e["msg"] for e in body["errors"]]


# --- the task life -------------------------------------------------------------------------


def test_task_moves_through_the_stages_to_a_playable_video(server, api):
    task_id = api.imagine()
    seen = api.wait(task_id)
    order = ["staged", "starting", "processing", "finished"]
    statuses = [s["status"] for s in seen]
    assert statuses == sorted(statuses, key=order.index), "never backwards"
    assert {"staged", "processing", "finished"} <= set(statuses)
    processing = [s["percentage"] for s in seen if s["status"] == "processing"]
    assert all(isinstance(p, str) for p in processing), "percentages arrive as strings"
    numbers = [int(p) for p in processing]
    assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
    assert all(0 <= n <= 99 for n in numbers)
    final = seen[-1]
    assert final == {
        "task_id": task_id,
        "task_type": "runway",
        "status": "finished",
        "percentage": 100,
        "video_url": f"{server.base_url}/videos/{task_id}.mp4",
    }
    finished_at = server.finished_at(task_id)
    assert finished_at is not None and finished_at <= server.clock()
    video = api.get(f"/videos/{task_id}.mp4")
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (640, 360)


def test_finished_at_is_unknown_while_running(server, api):
    task_id = api.imagine()
    assert server.finished_at(task_id) is None
    assert server.finished_at("no-such-task") is None
    assert api.get(f"/videos/{task_id}.mp4").status_code == 404


def test_job_seconds_may_depend_on_the_request(clock):
    spread = lambda payload: 3 if "quick" in payload["prompt"] else 30  # noqa: E731
    with DemoServer(job_seconds=spread, clock=clock) as demo:
        api = Api(demo)
        submitted = clock()
        slow = api.imagine(prompt="a slow one")
        quick = api.imagine(prompt="a quick one")
        api.wait(quick)
        api.wait(slow)
        assert demo.finished_at(quick) < demo.finished_at(slow)
        assert demo.finished_at(slow) >= submitted + 30


def test_job_seconds_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RUNWAY_WIDGET_DEMO_SECONDS", "0.75")
    assert DemoServer().job_seconds == 0.75
    monkeypatch.delenv("RUNWAY_WIDGET_DEMO_SECONDS")
    assert DemoServer().job_seconds == 6.0
    assert DemoServer(job_seconds=2).job_seconds == 2


def test_forbidden_prompt_fails_part_way_with_a_moderation_message(server, api):
    task_id = api.imagine(prompt="a Forbidden temple")
    seen = api.wait(task_id)
    final = seen[-1]
    assert final["status"] == "failed"
    assert "moderation" in final["message"]
    assert "video_url" not in final
    assert any(s["status"] == "processing" for s in seen), "fails part-way, not at once"
    assert server.finished_at(task_id) is not None
    assert api.get(f"/videos/{task_id}.mp4").status_code == 404


def test_fail_rate_makes_tasks_fail(server, api):
    server.faults.fail_rate = 1.0
    final = api.wait(api.imagine())[-1]
    assert final["status"] == "failed" and final["message"]


def test_a_marked_prompt_reports_its_clip_elsewhere(server, api):
    server.faults.elsewhere_marker = "[elsewhere]"
    server.faults.elsewhere_video_url = "http://127.0.0.1:9/slow.mp4"
    marked = api.imagine(prompt="a lighthouse [elsewhere]")
    plain = api.imagine()
    assert api.wait(marked)[-1]["video_url"] == "http://127.0.0.1:9/slow.mp4"
    assert api.wait(plain)[-1]["video_url"] == server.video_url(plain)


def test_unloadable_input_fails_the_task_with_a_reason(server, api):
    task_id = api.imagine(
        generation_type="image2video", image_url="http://127.0.0.1:9/nothing-here.png"
    )
    final = api.wait(task_id)[-1]
    assert final["status"] == "failed"
    assert "could not load" in final["message"]


def test_same_clip_is_rendered_once(server, api):
    first = api.imagine(webhook_url="http://127.0.0.1:9/a", webhook_secret="one")
    second = api.imagine(webhook_url="http://127.0.0.1:9/b", webhook_secret="two")
    third = api.imagine(prompt="something else")
    for task_id in (first, second, third):
        assert api.wait(task_id)[-1]["status"] == "finished"
    assert server.render_count == 2
    assert api.get(f"/videos/{first}.mp4").content == api.get(f"/videos/{second}.mp4").content


# --- the API surface -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": "", "generation_type": "text2video"},
        {"prompt": "x", "generation_type": "image2video", "aspect_ratio": "2:1", "duration": 7},
        {"prompt": "x", "generation_type": "video2video", "video_url": "ftp://nope", "flip": 1},
        {"prompt": "x", "generation_type": "text2video", "model": "gen9", "duration": "5"},
    ],
)
def test_invalid_requests_get_every_problem_in_the_api_error_format(api, body):
    response = api.post("/runway-imagine", body)
    assert response.status_code == 400
    expected = [p.message for p in GenerationRequest.from_payload(body).problems()]
    assert expected and errors(response) == expected


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_a_400(api, raw):
    response = api.session.post(
        api.demo.base_url + "/runway-imagine",
        data=raw,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert errors(response)


@pytest.mark.parametrize(
    "key", [None, "", "wrong-key", "Bearer wrong-key", "Bearer ", f"Basic {DEMO_API_KEY}"]
)
def test_wrong_or_missing_key_is_a_401(server, key):
    api = Api(server, key=key)
    for response in (api.post("/runway-imagine", T2V), api.get("/account")):
        assert response.status_code == 401
        assert errors(response) == ["Invalid API key"]
        assert DEMO_API_KEY not in response.text


@pytest.mark.parametrize("key", [DEMO_API_KEY, f"Bearer {DEMO_API_KEY}", f"bearer  {DEMO_API_KEY}"])
def test_the_key_is_accepted_raw_or_the_bearer_way_apiframes_sdk_sends_it(server, key):
    api = Api(server, key=key)
    assert api.get("/account").status_code == 200
    assert api.post("/fetch", {"task_id": api.imagine()}).status_code == 200


def test_fetch_unknown_or_missing_task_id(api):
    missing = api.post("/fetch", {"task_id": "no-such-task"})
    assert missing.status_code == 404
    assert errors(missing) == ["Task not found"]
    assert api.post("/fetch", {}).status_code == 400


def test_fetch_many_takes_two_to_twenty_ids_and_omits_unknown_ones(api):
    ids = [api.imagine(prompt=f"clip {i}") for i in range(2)]
    assert api.post("/fetch-many", {"task_ids": ids[:1]}).status_code == 400
    assert api.post("/fetch-many", {"task_ids": ids * 10 + ["x"]}).status_code == 400
    assert api.post("/fetch-many", {"task_ids": "abc"}).status_code == 400
    response = api.post("/fetch-many", {"task_ids": [ids[1], "unknown", ids[0]]})
    assert response.status_code == 200
    tasks = response.json()["tasks"]
    assert [t["task_id"] for t in tasks] == [ids[1], ids[0]]
    assert all(t["task_type"] == "runway" for t in tasks)
    assert api.post("/fetch-many", {"task_ids": ids * 10}).status_code == 200


def test_credits_go_down_per_job_and_run_out(clock):
    with DemoServer(job_seconds=1.0, credits=12, clock=clock) as demo:
        api = Api(demo)
        before = api.get("/account").json()
        assert before == {
            "email": before["email"],
            "credits": 12,
            "total_images": 0,
            "plan": "demo",
        }
        api.imagine()
        assert api.get("/account").json()["credits"] == 7
        refused = api.post("/runway-imagine", {**T2V, "duration": 10})
        assert refused.status_code == 402
        assert "credits" in errors(refused)[0]
        api.imagine(duration=5)
        after = api.get("/account").json()
        assert (after["credits"], after["total_images"]) == (2, 2)
        assert api.post("/runway-imagine", T2V).status_code == 402


def test_wrong_method_and_unknown_route(api):
    assert api.get("/fetch").status_code == 405
    missing = api.get("/nothing")
    assert missing.status_code == 404 and errors(missing) == ["Not found"]


def test_stats_count_requests_per_route(server, api):
    task_id = api.imagine()
    api.fetch(task_id)
    api.fetch(task_id)
    api.get("/account")
    api.get("/samples/lighthouse.png")
    assert server.stats == {"/runway-imagine": 1, "/fetch": 2, "/account": 1, "/samples": 1}
    assert server.requests_total == 5


# --- media -----------------------------------------------------------------------------------


def test_videos_support_range_requests(server, api):
    task_id = api.imagine()
    api.wait(task_id)
    path = f"/videos/{task_id}.mp4"
    whole = api.get(path)
    size = len(whole.content)
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert int(whole.headers["Content-Length"]) == size

    part = api.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.content == whole.content[100:200]

    tail = api.get(path, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    assert tail.headers["Content-Range"] == f"bytes {size - 50}-{size - 1}/{size}"

    rest = api.get(path, headers={"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206 and rest.content == whole.content[-10:]

    clipped = api.get(path, headers={"Range": f"bytes={size - 5}-{size + 100}"})
    assert clipped.status_code == 206 and clipped.content == whole.content[-5:]

    beyond = api.get(path, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"

    head = api.session.head(server.base_url + path, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == size
    assert head.content == b""


def test_samples_are_served_and_the_clip_is_derived(server, api):
    image = api.get("/samples/lighthouse.png")
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (640, 426)
    assert server.sample_url("landscape.jpg") == f"{server.base_url}/samples/landscape.jpg"
    assert requests.get(server.sample_url("landscape.jpg"), timeout=10).status_code == 200
    clip = requests.get(server.sample_url("clip.mp4"), timeout=30)
    assert clip.status_code == 200 and clip.headers["Content-Type"] == "video/mp4"
    with av.open(io.BytesIO(clip.content)) as container:
        assert abs(float(container.duration) / av.time_base - 5) <= 0.2
    assert api.get("/samples/../server.py").status_code == 404
    assert api.get("/samples/nothing.png").status_code == 404


def test_image2video_and_video2video_work_from_the_samples(server, api):
    image_task = api.imagine(
        generation_type="image2video", image_url=server.sample_url("lighthouse.png")
    )
    video_task = api.imagine(generation_type="video2video", video_url=server.sample_url("clip.mp4"))
    for task_id in (image_task, video_task):
        assert api.wait(task_id)[-1]["status"] == "finished"
    with av.open(io.BytesIO(api.get(f"/videos/{image_task}.mp4").content)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.int16)
    source = np.asarray(
        Image.open(io.BytesIO(api.get("/samples/lighthouse.png").content)).convert("RGB")
    )
    assert first.shape == source.shape
    assert np.abs(first - source).mean() < 6


def test_inputs_from_another_server_are_downloaded(server, api, clock):
    with DemoServer(job_seconds=1.0, clock=clock) as elsewhere:
        task_id = api.imagine(
            generation_type="image2video",
            image_url=elsewhere.sample_url("landscape.jpg"),
            end_image_url=server.sample_url("lighthouse.png"),
        )
        assert api.wait(task_id)[-1]["status"] == "finished"
        assert elsewhere.stats.get("/samples") == 1, "fetched over HTTP from the other server"


def png_bytes(size=(64, 48), colour=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_upload_returns_a_url_that_serves_the_image_and_renders(server, api):
    data = png_bytes()
    response = api.session.post(
        server.base_url + "/upload", files={"image": ("red.png", data, "image/png")}, timeout=10
    )
    assert response.status_code == 200, response.text
    url = response.json()["imageURL"]
    assert url.startswith(server.base_url + "/uploads/")
    assert requests.get(url, timeout=10).content == data
    task_id = api.imagine(generation_type="image2video", image_url=url)
    assert api.wait(task_id)[-1]["status"] == "finished"


def test_upload_rejects_bad_input(server, api):
    def upload(**files) -> requests.Response:
        return api.session.post(server.base_url + "/upload", files=files, timeout=10)

    big = np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 2 * 1024 * 1024
    too_big = upload(image=("big.png", buffer.getvalue(), "image/png"))
    assert too_big.status_code == 400 and "2 MB" in errors(too_big)[0]
    not_image = upload(image=("a.png", b"plain text", "image/png"))
    assert not_image.status_code == 400
    wrong_field = upload(picture=("a.png", png_bytes(), "image/png"))
    assert wrong_field.status_code == 400 and "'image'" in errors(wrong_field)[0]
    assert api.post("/upload", {"image": "x"}).status_code == 400
    assert api.get("/account").status_code == 200, "the connection still works afterwards"


# --- webhooks ----------------------------------------------------------------------------------


class Receiver:
    """A tiny webhook endpoint: records (headers, body); the first `fail_first` calls get 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[dict, dict]] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                status = 500 if receiver.attempts <= receiver.fail_first else 200
                if status == 200:
                    data = json.loads(body)
                    receiver.calls.append((dict(self.headers), data))
                    if data["status"] in ("finished", "failed"):
                        receiver.done.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def test_webhooks_post_every_change_in_order_with_the_secret(live_server, live_api, receiver):
    task_id = live_api.imagine(webhook_url=receiver.url, webhook_secret="s3cret")
    assert receiver.done.wait(30)
    bodies = [body for _, body in receiver.calls]
    assert all(h.get("x-webhook-secret") == "s3cret" for h, _ in receiver.calls)
    assert all(b["task_id"] == task_id for b in bodies)
    order = ["staged", "starting", "processing", "finished"]
    statuses = [b["status"] for b in bodies]
    assert statuses == sorted(statuses, key=order.index)
    assert statuses[0] == "staged" and statuses[-1] == "finished"
    steps = [int(b["percentage"]) // 10 for b in bodies if b["status"] == "processing"]
    assert steps == sorted(set(steps)), "one call per 10% step, in order"
    assert len(steps) >= 5
    assert bodies[-1]["video_url"] == f"{live_server.base_url}/videos/{task_id}.mp4"
    assert bodies[-1] == live_api.fetch(task_id)
    assert live_server.webhook_stats["failed"] == 0


def test_webhook_failures_are_retried_and_never_break_the_task(live_server, live_api):
    flaky = Receiver(fail_first=2)
    try:
        task_id = live_api.imagine(webhook_url=flaky.url, webhook_secret="s")
        assert flaky.done.wait(30)
        assert flaky.calls[0][1]["status"] == "staged", "the first update, retried"
        assert flaky.attempts >= len(flaky.calls) + 2
    finally:
        flaky.close()
    unreachable = live_api.imagine(prompt="nobody listens", webhook_url="http://127.0.0.1:9/hook")
    assert live_api.wait(unreachable)[-1]["status"] == "finished"
    assert live_api.wait(task_id)[-1]["status"] == "finished"


def test_failed_task_webhook_carries_the_message(live_server, live_api, receiver):
    live_api.imagine(prompt="forbidden fruit", webhook_url=receiver.url)
    assert receiver.done.wait(30)
    headers, final = receiver.calls[-1]
    assert final["status"] == "failed" and "moderation" in final["message"]
    assert "x-webhook-secret" not in {k.lower() for k in headers}


# --- faults ------------------------------------------------------------------------------------


def test_error_rate_gives_random_5xx_before_any_work(server, api):
    server.faults.error_rate = 1.0
    codes = {api.post("/runway-imagine", T2V).status_code for _ in range(12)}
    assert codes <= {500, 502, 503} and codes
    assert api.get("/samples/lighthouse.png").status_code == 200, "media is never faulted"
    server.faults.reset()
    assert api.get("/account").json()["total_images"] == 0, "no job was created"


def test_rate_limit_burst_answers_429_with_retry_after(server, api):
    server.faults.rate_limit_burst = 2
    server.faults.retry_after = 3
    first, second = api.get("/account"), api.post("/fetch", {"task_id": "x"})
    for response in (first, second):
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert errors(response)
    assert api.get("/account").status_code == 200
    assert server.faults.rate_limit_burst == 0


def test_past_its_concurrency_the_demo_refuses_as_a_provider_does(clock):
    with DemoServer(job_seconds=1.0, concurrency=2, clock=clock) as demo:
        api = Api(demo)
        running = [api.imagine(), api.imagine()]
        refused = api.post("/runway-imagine", T2V)
        assert refused.status_code == 429
        assert refused.json() == {"errors": [{"msg": "too many running jobs"}]}
        assert 1 <= int(refused.headers["Retry-After"]) <= 2  # until a running job ends
        clock.advance(1.0)
        wait_for(
            lambda: api.post("/fetch", {"task_id": running[0]}).json()["status"] == "finished",
            "a running job to end",
        )
        assert api.post("/runway-imagine", T2V).status_code == 200  # a slot is free again
        assert (demo.peak_running, demo.busy_refusals) == (2, 1)
    with pytest.raises(ValueError):
        DemoServer(concurrency=0)


def test_slow_replies_time_out_a_short_client_timeout(server, api):
    server.faults.slow_seconds = 1.0
    with pytest.raises(requests.ReadTimeout):
        api.get("/account", timeout=0.2)
    server.faults.slow_seconds = 0.0
    assert api.get("/account").status_code == 200


def test_drop_rate_closes_the_connection_without_a_reply(server, api):
    server.faults.drop_rate = 1.0
    with pytest.raises(requests.ConnectionError):
        api.post("/runway-imagine", T2V)
    server.faults.drop_rate = 0.0
    # The job was taken before the connection dropped: the client cannot know (never retry).
    assert api.get("/account").json()["total_images"] == 1


def test_malformed_rate_answers_200_with_a_body_that_is_not_json(server, api):
    server.faults.malformed_rate = 1.0
    response = api.get("/account")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_faults_are_a_plain_mutable_dataclass():
    faults = DemoFaults(error_rate=0.5, rate_limit_burst=3)
    faults.reset()
    assert faults == DemoFaults()


# --- lifecycle ---------------------------------------------------------------------------------


def demo_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("runway-widget-demo")}


def test_stop_leaves_no_threads_behind(receiver):
    before = set(threading.enumerate())
    demo = DemoServer(job_seconds=30.0).start()
    api = Api(demo)
    api.imagine(webhook_url=receiver.url)  # webhook thread, render in flight
    api.imagine(prompt="other", duration=10)
    api.get("/account")  # the session keeps an idle keep-alive connection open
    assert demo_threads() - before
    demo.stop()
    assert demo_threads() <= before, "only threads of servers started elsewhere remain"
    assert set(threading.enumerate()) <= before
    with pytest.raises(requests.ConnectionError):
        requests.get(demo.base_url + "/account", timeout=2)
    demo.stop()  # idempotent
    api.session.close()


def test_context_manager_and_repr_do_not_show_the_key():
    with DemoServer(job_seconds=1) as demo:
        assert demo.is_running and demo.base_url.startswith("http://127.0.0.1:")
        assert DEMO_API_KEY not in repr(demo)
    assert not demo.is_running


def test_shared_demo_server_is_one_per_process():
    found: list[DemoServer] = []
    threads = [
        threading.Thread(target=lambda: found.append(shared_demo_server())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(s) for s in found}) == 1
    assert found[0].is_running
    assert requests.get(found[0].base_url + "/account", timeout=5).status_code == 401


def test_import_without_the_demo_libraries_says_what_to_install():
    code = (
        "import sys; sys.modules['av'] = None\n"
        "try:\n    import runway_widget.demo\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install av numpy Pillow" in result.stdout


# --- hostile clients -------------------------------------------------------------------------


@pytest.mark.parametrize("length", ["²", "٣", "-5", "+5", "1e3", "abc", "12, 13"])
@pytest.mark.parametrize(
    "request_line",
    ["POST /runway-imagine", "POST /fetch", "POST /upload", "GET /account", "GET /nothing",
     "GET /samples/lighthouse.png", "POST /samples/lighthouse.png"],
)  # fmt: skip
def test_malformed_content_length_is_a_4xx_on_every_route(server, request_line, length):
    reply = raw_exchange(
        server.port,
        f"{request_line} HTTP/1.1\r\nHost: x\r\nAuthorization: {DEMO_API_KEY}\r\n"
        f"Content-Length: {length}\r\n\r\n{{}}".encode(),
    )
    assert 400 <= status_of(reply) < 500 or request_line.startswith("GET /samples")
    assert Api(server).get("/account").status_code == 200


def short_id(value: str) -> str:
    return value if len(value) <= 30 else f"{value[:12]}…({len(value)} chars)"


@pytest.mark.parametrize("length", ["9" * 5000, "99999999999999999999", str(2**62)], ids=short_id)
def test_absurd_content_length_is_a_400_without_reading_it(server, length):
    reply = raw_exchange(
        server.port,
        f"POST /runway-imagine HTTP/1.1\r\nHost: x\r\nAuthorization: {DEMO_API_KEY}\r\n"
        f"Content-Length: {length}\r\n\r\n{{}}".encode(),
    )
    assert status_of(reply) == 400
    assert b"too large" in reply


def test_a_body_shorter_than_its_length_is_a_400(server):
    body = json.dumps(T2V).encode()
    reply = raw_exchange(
        server.port,
        f"POST /runway-imagine HTTP/1.1\r\nHost: x\r\nAuthorization: {DEMO_API_KEY}\r\n"
        f"Content-Length: {len(body) + 10}\r\n\r\n".encode()
        + body,
    )
    assert status_of(reply) == 400
    assert Api(server).get("/account").json()["total_images"] == 0


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "9" * 5000 + "-",
        "bytes=0-" + "9" * 5000,
        "bytes=-" + "9" * 5000,
        "bytes=99999999999999999999-5",
        "bytes=²-",
        "bytes=-0",
        "bytes=5-1",
        "bytes=0-1,2-3",
        "bytes=--1",
        "items=0-1",
        "bytes=" + "0-1," * 5000,
    ],
    ids=short_id,
)
def test_absurd_range_headers_get_416_or_the_whole_file(server, api, header):
    path = "/samples/lighthouse.png"
    size = len(api.get(path).content)
    reply = raw_exchange(
        server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nRange: {header}\r\n\r\n".encode()
    )
    status = status_of(reply)
    assert status in (200, 206, 416), status
    if status == 416:
        assert f"Content-Range: bytes */{size}".encode() in reply
    assert api.get(path, headers={"Range": "bytes=0-9"}).status_code == 206


def test_a_hundred_idle_connections_do_not_stop_a_job(clock):
    with DemoServer(job_seconds=20, clock=clock, max_connections=16) as demo:
        api = Api(demo)
        before = threading.active_count()
        with idle_connections(demo.port, 100) as idle:
            assert peak_thread_growth(before, idle, kept=16) <= 2 * 16  # one per connection: 100
            task_id = api.imagine()
            assert api.fetch(task_id)["task_id"] == task_id
        api.session.close()
