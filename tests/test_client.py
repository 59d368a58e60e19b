"""ApiframeClient against the fake service: in memory on a fake clock, and over real HTTP
where the wire itself is the point (refused, late, dropped and cut-off connections)."""

from __future__ import annotations

import itertools
import logging
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest
from fake_api import TEST_API_KEY, FakeApi, Reply, error

from runway_widget._http.retries import retry_policy
from runway_widget._secrets import mask_secret
from runway_widget.client.apiframe import DEFAULT_BASE_URL, ApiframeClient
from runway_widget.client.budget import RequestBudget
from runway_widget.errors import (
    ApiframeError,
    AuthenticationError,
    NetworkError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnexpectedReplyError,
    ValidationError,
)
from runway_widget.models import GenerationRequest, Task
from runway_widget.store import JobStore

HINT = "check `runway-widget history` before resubmitting"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.jsonl")


@pytest.fixture
def make_client(client_for, api: FakeApi, store: JobStore):
    """Clients of the in-memory fake (any option may be overridden, the service too)."""

    def make(service: FakeApi | None = None, **options) -> ApiframeClient:
        options.setdefault("store", store)
        options.setdefault("timeout", 5.0)
        options.setdefault("requests_per_second", float("inf"))
        options.setdefault("backoff_max", 2.0)
        return client_for(service or api, **options)

    return make


@pytest.fixture
def client(make_client) -> ApiframeClient:
    return make_client()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- construction ---------------------------------------------------------------------------


def test_defaults_and_environment(monkeypatch, api):
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    monkeypatch.delenv("APIFRAME_BASE_URL", raising=False)
    with ApiframeClient() as plain:
        assert plain.base_url == DEFAULT_BASE_URL == "https://api.apiframe.pro"
        assert plain.api_key is None
        assert plain.session is not None  # real connections unless told otherwise
    monkeypatch.setenv("APIFRAME_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("APIFRAME_BASE_URL", api.base_url + "/")
    monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "0.25")
    with ApiframeClient(transport=api.transport()) as from_env:
        assert from_env.base_url == api.base_url
        assert from_env.poll_interval == 0.25
        assert from_env.account()["credits"] == 420
    assert api.requests()[0].headers["authorization"] == TEST_API_KEY
    assert api.requests()[0].headers["user-agent"].startswith("runway_widget/")


def test_missing_key_fails_on_first_request_without_sending(api, store):
    with ApiframeClient(base_url=api.base_url, store=store, transport=api.transport()) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.fetch("t")
        assert "set APIFRAME_API_KEY or pass api_key=" in str(caught.value)
        with pytest.raises(AuthenticationError):
            client.imagine(prompt="a cat")
    assert api.count() == 0


def test_is_demo_only_for_a_client_made_by_demo(make_client):
    assert not make_client(api_key="runway-widget-demo-key").is_demo
    assert not make_client().is_demo


def test_a_demo_plan_marks_the_client_demo_only_on_a_loopback_backend(make_client, api, clock):
    client = make_client()
    client.account()
    assert not client.is_demo  # a loopback backend whose plan is not "demo"
    api.account_info["plan"] = "demo"
    assert not client.is_demo
    assert client.account()["plan"] == "demo"
    assert client.is_demo and ", demo" in repr(client)
    remote = FakeApi(clock=clock, base_url="https://api.example.com")
    remote.account_info["plan"] = "demo"
    far = make_client(remote)
    assert far.account()["plan"] == "demo"
    assert not far.is_demo  # not on this machine: a plan name proves nothing


def test_layers_only_look_down():
    """The demo backend never imports the client (the demo key lives with the demo)."""
    probe = (
        "import sys, runway_widget.demo.server\n"
        "print('runway_widget.client.apiframe' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


# -- imagine ----------------------------------------------------------------------------------


def test_imagine_sends_the_exact_payload_with_the_raw_key(client, api):
    request = GenerationRequest(
        prompt="a lighthouse in a storm", aspect_ratio="16:9", model="gen3a_turbo", duration=5
    )
    task_id = client.imagine(request)
    assert task_id == "task-0001"
    (seen,) = api.requests("/runway-imagine")
    assert seen.method == "POST"
    assert seen.headers["authorization"] == TEST_API_KEY
    assert seen.headers["content-type"] == "application/json"
    assert seen.json == request.to_payload()


def test_imagine_takes_fields_too(client, api):
    client.imagine(prompt="waves", generation_type="text2video", duration=10, flip=True)
    assert api.requests("/runway-imagine")[0].json == {
        "prompt": "waves",
        "generation_type": "text2video",
        "duration": 10,
        "flip": True,
    }


def test_imagine_validates_before_sending(client, api):
    with pytest.raises(ValidationError) as caught:
        client.imagine(prompt="", generation_type="image2video", duration=7)
    assert set(caught.value.fields) == {"prompt", "image_url", "duration"}
    with pytest.raises(ValidationError):
        client.imagine(generation_type="text2video")
    assert api.count() == 0


def test_imagine_journals_before_returning_and_never_the_secret(client, api, store):
    request = GenerationRequest(
        prompt="journalled", webhook_url="https://hooks.example.com/x", webhook_secret="whsec-XYZ9"
    )
    task_id = client.imagine(request)
    job = store.get(task_id)
    assert job is not None
    assert job.backend == api.base_url
    assert job.request == request.public_payload()
    assert job.status == "submitted"
    text = store.path.read_text()
    assert "whsec-XYZ9" not in text and TEST_API_KEY not in text


def test_server_side_400_is_a_validation_error_with_every_message(client, api):
    api.script("/runway-imagine", error(400, "prompt is too long"))
    api.script(
        "/fetch",
        Reply(400, json={"errors": [{"msg": "task_id is required"}, {"msg": "bad format"}]}),
    )
    with pytest.raises(ValidationError) as caught:
        client.imagine(prompt="p")
    assert caught.value.problems == ["prompt is too long"]
    assert caught.value.status_code == 400
    with pytest.raises(ValidationError) as caught:
        client.fetch("x")
    assert caught.value.problems == ["task_id is required", "bad format"]
    assert "the server rejected the request" in str(caught.value)


def test_imagine_retries_429_and_503_honouring_retry_after(client, api, store):
    api.script("/runway-imagine", Reply(429, json={}), error(503, "busy", **{"Retry-After": "1"}))
    task_id = client.imagine(prompt="patience")
    seen = api.requests("/runway-imagine")
    assert len(seen) == 3
    assert seen[2].at - seen[1].at == pytest.approx(1.0)  # Retry-After: 1 was obeyed
    assert store.get(task_id) is not None


def test_imagine_is_not_retried_on_500(client, api):
    api.script("/runway-imagine", error(500, "boom"))
    with pytest.raises(ServerError) as caught:
        client.imagine(prompt="p")
    assert caught.value.status_code == 500
    assert "boom" in str(caught.value) and HINT in str(caught.value)
    assert api.count("/runway-imagine") == 1


@pytest.mark.parametrize("wire", ["memory", "socket"])
def test_imagine_read_timeout_is_sent_exactly_once_and_unknown(make_client, api, api_server,
                                                               store, wire):
    service = api_server if wire == "socket" else api
    client = make_client(service, timeout=0.3)
    service.script("/runway-imagine", Reply(json={"task_id": "late"}, delay=1.0))
    with pytest.raises(SubmissionUnknownError) as caught:
        client.imagine(prompt="a paid job")
    assert HINT in str(caught.value)
    assert "the task may or may not exist" in str(caught.value)
    assert "no answer within 0.3s" in str(caught.value)
    assert service.count("/runway-imagine") == 1
    assert store.load().jobs == []


@pytest.mark.parametrize("wire", ["memory", "socket"])
def test_imagine_dropped_connection_is_sent_once_and_unknown(make_client, api, api_server, wire):
    service = api_server if wire == "socket" else api
    service.script("/runway-imagine", Reply(drop=True))
    with pytest.raises(SubmissionUnknownError) as caught:
        make_client(service).imagine(prompt="p")
    assert "dropped" in str(caught.value)
    assert service.count("/runway-imagine") == 1


def test_imagine_refused_connection_is_a_network_error_not_unknown(store):
    with ApiframeClient(TEST_API_KEY, closed_port_url(), store=store, max_retries=1,
                        backoff_factor=0.001) as client, pytest.raises(NetworkError) as caught:
        client.imagine(prompt="p")
    assert not isinstance(caught.value, SubmissionUnknownError)
    assert "could not connect" in str(caught.value)


def test_imagine_malformed_success_is_unknown_with_status_and_excerpt(client, api):
    api.script("/runway-imagine", Reply(json={"id": "abc"}), Reply(body="<html>gateway</html>"))
    for _ in range(2):
        with pytest.raises(SubmissionUnknownError) as caught:
            client.imagine(prompt="p")
        assert caught.value.status_code == 200
        assert "HTTP 200" in str(caught.value)
    assert "gateway" in str(caught.value)


# -- reads: fetch, fetch_batch, fetch_many, account ---------------------------------------------


def test_fetch_parses_a_task(client, api):
    api.add_task("t1", {"status": "processing", "percentage": "40"})
    task = client.fetch("t1")
    assert (task.task_id, task.status, task.percentage) == ("t1", "processing", 40)
    seen = api.requests("/fetch")[0]
    assert seen.json == {"task_id": "t1"}
    assert seen.headers["authorization"] == TEST_API_KEY


def test_fetch_unknown_task_is_task_not_found(client):
    with pytest.raises(TaskNotFoundError) as caught:
        client.fetch("nope")
    assert caught.value.task_id == "nope"
    assert caught.value.status_code == 404


def test_refused_key_is_an_authentication_error(make_client, api):
    client = make_client(api_key="sk-wrong-key-0000-abcd")
    with pytest.raises(AuthenticationError) as caught:
        client.account()
    message = str(caught.value)
    assert "check APIFRAME_API_KEY" in message
    assert "…abcd" in message and "sk-wrong-key" not in message
    assert caught.value.status_code == 401
    assert api.count("/account") == 1


def test_reads_retry_5xx_then_succeed(client, api):
    api.add_task("t1", {"status": "staged"})
    api.script("/fetch", error(500, "a"), error(502, "b"), error(503, "c"), error(504, "d"))
    assert client.fetch("t1").status == "staged"
    assert api.count("/fetch") == 5


def test_reads_give_up_with_server_error(make_client, api):
    client = make_client(max_retries=2)
    api.script("/account", *[Reply(500, body="<html>Internal</html>")] * 3)
    with pytest.raises(ServerError) as caught:
        client.account()
    assert caught.value.status_code == 500
    assert "Internal" in str(caught.value)
    assert api.count("/account") == 3


def test_reads_honour_retry_after(client, api):
    api.add_task("t1", {"status": "staged"})
    api.script("/fetch", error(429, "slow down", **{"Retry-After": "1"}))
    assert client.fetch("t1").status == "staged"
    first, second = api.requests("/fetch")
    assert second.at - first.at == pytest.approx(1.0)


def test_backoff_never_sleeps_past_the_call_deadline(make_client, api, clock):
    client = make_client(deadline=3.0, backoff_factor=10.0, backoff_max=10.0, max_retries=10)
    api.script("/account", *[error(500, "down")] * 20)
    started = clock()
    with pytest.raises(NetworkError, match="deadline"):
        client.account()
    assert clock() - started == pytest.approx(3.0)


def test_rate_limit_after_retries_carries_retry_after(make_client, api):
    client = make_client(max_retries=1)
    api.script("/account", *[error(429, "slow down")] * 2)
    with pytest.raises(RateLimitError) as caught:
        client.account()
    assert caught.value.retry_after is None
    assert api.count("/account") == 2


def test_retry_after_beyond_backoff_max_fails_at_once(make_client, api):
    client = make_client(backoff_max=2.0)
    api.script("/account", error(429, "come back later", **{"Retry-After": "120"}))
    with pytest.raises(RateLimitError) as caught:
        client.account()
    assert caught.value.retry_after == 120.0
    assert "120" in str(caught.value)
    assert api.count("/account") == 1


def test_reads_retry_timeouts_and_dropped_connections(make_client, api):
    client = make_client(timeout=0.3, deadline=30)
    api.add_task("t1", {"status": "starting"})
    api.script("/fetch", Reply(json={}, delay=1.0), Reply(drop=True))
    assert client.fetch("t1").status == "starting"
    assert api.count("/fetch") == 3


def test_reads_that_never_connect_are_network_errors(store):
    with ApiframeClient(TEST_API_KEY, closed_port_url(), store=store, max_retries=1,
                        backoff_factor=0.001) as client, pytest.raises(NetworkError) as caught:
        client.fetch("t1")
    assert "could not reach" in str(caught.value) and "could not connect" in str(caught.value)


@pytest.mark.parametrize(
    ("path", "reply", "call"),
    [
        ("/fetch", Reply(body="<html>oops</html>"), lambda c: c.fetch("t1")),
        ("/fetch", Reply(json={"unexpected": True}), lambda c: c.fetch("t1")),
        ("/fetch", Reply(json=["t1"]), lambda c: c.fetch("t1")),
        ("/fetch-many", Reply(json={"tasks": "t1"}), lambda c: c.fetch_batch(["t1", "t2"])),
        ("/fetch-many", Reply(json={"items": []}), lambda c: c.fetch_batch(["t1", "t2"])),
        ("/fetch-many", Reply(json={"tasks": [{"id": 1}]}), lambda c: c.fetch_many(["a", "b"])),
        ("/account", Reply(json=[1, 2]), lambda c: c.account()),
        ("/account", Reply(body=b""), lambda c: c.account()),
        ("/upload", Reply(json={"url": "x"}), lambda c: c.upload_image(PNG)),
    ],
)
def test_malformed_replies_are_apiframe_errors_with_status_and_excerpt(
    client, api, path, reply, call
):
    api.script(path, reply)
    with pytest.raises(ApiframeError) as caught:
        call(client)
    error_ = caught.value
    assert type(error_) is UnexpectedReplyError
    assert error_.status_code == 200
    assert f"unexpected reply from {path} (HTTP 200)" in str(error_)
    assert not isinstance(error_, (ValueError, KeyError))
    if "oops" in repr(reply.body):
        assert "oops" in str(error_)


def test_fetch_batch_of_one_uses_fetch_and_unknown_is_empty(client, api):
    api.add_task("t1", {"status": "staged"})
    assert client.fetch_batch(["t1"])["t1"].status == "staged"
    assert client.fetch_batch(["missing"]) == {}
    assert client.fetch_batch([]) == {}
    assert api.count("/fetch") == 2 and api.count("/fetch-many") == 0


def test_fetch_batch_returns_only_what_the_server_returned(client, api):
    api.add_task("a", {"status": "staged"})
    api.add_task("b", {"status": "finished", "video_url": "https://cdn.example.com/b.mp4"})
    result = client.fetch_batch(["a", "b", "gone"])
    assert set(result) == {"a", "b"}
    assert result["b"].is_finished
    assert api.requests("/fetch-many")[0].json == {"task_ids": ["a", "b", "gone"]}
    with pytest.raises(ValueError):
        client.fetch_batch([f"t{i}" for i in range(21)])


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (error(500, "boom"), ServerError),
        (error(503, "busy", **{"Retry-After": "1"}), ServerError),
        (error(429, "slow", **{"Retry-After": "1"}), RateLimitError),
        (Reply(drop=True), NetworkError),
        (Reply(body="not json"), ApiframeError),
    ],
)
def test_fetch_batch_without_retry_makes_exactly_one_attempt(client, api, reply, expected):
    api.add_task("a", {"status": "staged"})
    api.add_task("b", {"status": "staged"})
    api.script("/fetch-many", reply)
    with pytest.raises(expected) as caught:
        client.fetch_batch(["a", "b"], retry=False)
    if expected is RateLimitError:
        assert caught.value.retry_after == 1.0
    assert api.count("/fetch-many") == 1
    assert set(client.fetch_batch(["a", "b"], retry=False)) == {"a", "b"}


def test_fetch_batch_without_retry_of_one_id(client, api):
    api.script("/fetch", error(502, "bad gateway"))
    with pytest.raises(ServerError):
        client.fetch_batch(["a"], retry=False)
    assert api.count("/fetch") == 1


def test_fetch_batch_retries_by_default(client, api):
    api.add_task("a", {"status": "staged"})
    api.add_task("b", {"status": "staged"})
    api.script("/fetch-many", error(500, "boom"))
    assert set(client.fetch_batch(["a", "b"])) == {"a", "b"}
    assert api.count("/fetch-many") == 2


def test_fetch_many_chunks_45_ids_into_20_20_5(client, api):
    ids = [f"task-{i:02d}" for i in range(45)]
    for task_id in reversed(ids):
        api.add_task(task_id, {"status": "processing", "percentage": str(len(task_id))})
    tasks = client.fetch_many(ids)
    assert [t.task_id for t in tasks] == ids
    sizes = [len(seen.json["task_ids"]) for seen in api.requests("/fetch-many")]
    assert sizes == [20, 20, 5]
    assert api.count("/fetch") == 0


def test_fetch_many_sends_a_lone_remainder_to_fetch(client, api):
    ids = [f"t{i}" for i in range(41)]
    for task_id in ids:
        api.add_task(task_id, {"status": "staged"})
    assert [t.task_id for t in client.fetch_many(ids)] == ids
    assert api.count("/fetch-many") == 2
    assert [seen.json for seen in api.requests("/fetch")] == [{"task_id": "t40"}]


def test_fetch_many_refetches_omitted_ids_and_keeps_order_and_duplicates(client, api):
    for task_id in ("a", "b", "c"):
        api.add_task(task_id, {"status": "staged"})
    api.script(
        "/fetch-many",
        Reply(json={"tasks": [{"task_id": "c", "status": "staged"}, {"task_id": "a"}]}),
    )
    tasks = client.fetch_many(["a", "b", "c", "a"])
    assert [t.task_id for t in tasks] == ["a", "b", "c", "a"]
    assert [seen.json for seen in api.requests("/fetch")] == [{"task_id": "b"}]
    known, ghost = client.fetch_many(["a", "ghost"])
    assert known.status == "staged"
    assert ghost.is_failed and ghost.raw["not_found"] and "does not know" in ghost.message


def test_account(client, api):
    assert client.account() == api.account_info
    assert api.requests("/account")[0].method == "GET"


# -- the request budget ---------------------------------------------------------------------


def test_reads_take_a_token_and_submissions_do_not(make_client, api):
    client = make_client(requests_per_second=0.001)
    client.imagine(prompt="one")
    client.imagine(prompt="two")
    client.imagine(prompt="three")
    assert client.read_budget.reserve() == 0.0  # submissions left the bucket alone
    client.read_budget = RequestBudget(0.001, burst=2)
    api.add_task("a", {"status": "staged"})
    client.fetch("a")
    client.account()
    assert client.read_budget.reserve() > 0  # both tokens taken by the two reads
    client.read_budget = RequestBudget(0.001, burst=1)
    client.fetch_batch(["a"])
    assert client.read_budget.reserve() > 0
    client.read_budget = RequestBudget(0.001, burst=1)
    client.fetch_batch(["a"], retry=False)  # a self-pacing caller takes its own token
    client.fetch_batch(["a", "b"], retry=False)
    assert client.read_budget.reserve() == 0.0


def test_budget_bucket_with_a_clock():
    now = [100.0]
    budget = RequestBudget(rate=2.0, burst=2, clock=lambda: now[0])
    assert budget.reserve() == 0.0
    assert budget.reserve() == 0.0
    assert budget.reserve() == pytest.approx(0.5)
    now[0] += 0.25
    assert budget.reserve() == pytest.approx(0.25)
    now[0] += 0.25
    assert budget.reserve() == 0.0
    now[0] += 100
    assert [budget.reserve() for _ in range(3)][:2] == [0.0, 0.0]  # never more than burst


def test_budget_acquire_blocks_until_a_token_or_cancel(clock):
    budget = RequestBudget(rate=2.0, burst=1, clock=clock, sleep=clock.sleep)
    started = clock()
    assert all(budget.acquire() for _ in range(3))
    assert clock() - started == pytest.approx(1.0)  # two waits of half a second
    slow = RequestBudget(rate=0.001, burst=1)
    assert slow.acquire()
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    assert slow.acquire(cancel) is False
    assert slow.acquire(cancel) is False


def test_unlimited_budget_and_bad_rates():
    unlimited = RequestBudget(float("inf"))
    assert all(unlimited.reserve() == 0.0 for _ in range(1000))
    with pytest.raises(ValueError):
        RequestBudget(0)
    with pytest.raises(ValueError):
        RequestBudget(1, burst=0)


def test_submissions_retry_only_what_never_left():
    submit = retry_policy("submit", max_retries=3, backoff_factor=1, backoff_max=5)
    assert submit.statuses == {429, 503}
    read = retry_policy("read", max_retries=3, backoff_factor=1, backoff_max=5)
    assert {429, 500, 502, 503, 504} <= read.statuses
    once = retry_policy("once", max_retries=3, backoff_factor=1, backoff_max=5)
    assert once.retries == 0


def test_backoff_is_full_jitter_exponential():
    policy = retry_policy("read", max_retries=10, backoff_factor=0.5, backoff_max=3.0)
    assert policy.backoff(0) == 0.0
    for failures, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (8, 3.0)]:
        waits = [policy.backoff(failures) for _ in range(300)]
        assert all(0.0 <= w <= cap for w in waits)
        assert max(waits) > cap * 0.8 and min(waits) < cap * 0.2  # spread over [0, cap]


# -- upload ---------------------------------------------------------------------------------


def test_upload_bytes_and_path_as_multipart_image(client, api, tmp_path):
    url = client.upload_image(PNG)
    assert url.startswith(api.base_url + "/uploads/")
    seen = api.requests("/upload")[0]
    assert seen.headers["content-type"].startswith("multipart/form-data")
    assert b'name="image"; filename="image.png"' in seen.body
    assert b"Content-Type: image/png" in seen.body
    assert PNG in seen.body
    assert seen.headers["authorization"] == TEST_API_KEY
    photo = tmp_path / "first frame.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + b"\x01" * 100)
    client.upload_image(photo)
    second = api.requests("/upload")[1].body
    assert b'filename="first frame.jpg"' in second and b"image/jpeg" in second


def test_upload_limit_is_checked_locally(client, api, tmp_path):
    big = PNG + b"\x00" * (2 * 1024 * 1024)
    with pytest.raises(ValidationError) as caught:
        client.upload_image(big)
    assert "2 MB" in str(caught.value)
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(ValidationError):
        client.upload_image(path)
    with pytest.raises(ValidationError):
        client.upload_image(tmp_path / "missing.png")
    with pytest.raises(ValidationError):
        client.upload_image(b"")
    assert api.count() == 0
    exactly = PNG + b"\x00" * (2 * 1024 * 1024 - len(PNG))
    assert client.upload_image(exactly)


# -- wait -----------------------------------------------------------------------------------


def test_wait_reports_each_change_and_returns_the_finished_task(make_client, api, monkeypatch,
                                                               clock):
    monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "2")
    client = make_client()
    assert client.poll_interval == 2
    api.add_task(
        "t1",
        {"status": "staged"},
        {"status": "staged"},
        {"status": "processing", "percentage": "40"},
        {"status": "processing", "percentage": 40},
        {"status": "processing", "percentage": "80"},
        {"status": "finished", "percentage": "100", "video_url": "https://cdn.example.com/t1.mp4"},
    )
    seen: list[tuple[str, int | None]] = []
    task = client.wait(
        "t1", timeout=30, on_progress=lambda t: seen.append((t.status, t.percentage))
    )
    assert task.is_finished and task.video_url == "https://cdn.example.com/t1.mp4"
    assert seen == [("staged", None), ("processing", 40), ("processing", 80), ("finished", 100)]
    arrivals = [s.at for s in api.requests("/fetch")]
    assert len(arrivals) == 6
    assert [b - a for a, b in itertools.pairwise(arrivals)] == [2.0] * 5


def test_wait_raises_task_failed_with_the_task(client, api):
    api.add_task("t1", {"status": "processing"}, {"status": "failed", "error": "moderation"})
    with pytest.raises(TaskFailedError) as caught:
        client.wait("t1", poll_interval=1)
    assert caught.value.task.message == "moderation"
    assert "moderation" in str(caught.value)


def test_wait_times_out_with_the_last_task(client, api, clock):
    api.add_task("t1", {"status": "processing", "percentage": "12"})
    started = clock()
    with pytest.raises(TaskTimeoutError) as caught:
        client.wait("t1", timeout=20, poll_interval=3)
    assert clock() - started == pytest.approx(20)
    assert caught.value.task.percentage == 12
    assert caught.value.task_id == "t1"
    assert "runway-widget fetch t1" in str(caught.value)
    assert api.count("/fetch") == 8  # at 0, 3, 6, ... 18 s, and the last at 20 s


def test_a_poll_that_hangs_ends_with_the_wait(make_client, api, clock):
    client = make_client(timeout=60, max_retries=0)
    api.add_task("t1", {"status": "processing", "percentage": "12"})
    running = {"task_id": "t1", "status": "processing"}
    api.script("/fetch", Reply(json=running), Reply(json=running, delay=50))
    started = clock()
    with pytest.raises(TaskTimeoutError):
        client.wait("t1", timeout=10, poll_interval=3)
    assert clock() - started <= 10.5


# -- download -------------------------------------------------------------------------------


def video_bytes(size: int = 700_000) -> bytes:
    return bytes(range(256)) * (size // 256)


def test_download_streams_to_the_destination_and_journals(client, api, store, tmp_path):
    data = video_bytes()
    api.files["/videos/t1.mp4"] = data
    task = Task.from_json(
        {"task_id": "t1", "status": "finished", "video_url": f"{api.base_url}/videos/t1.mp4"}
    )
    path = client.download(task, tmp_path / "out" / "clip.mp4")
    assert path == tmp_path / "out" / "clip.mp4"
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["clip.mp4"]
    assert store.get("t1").local_path == str(path.resolve())
    assert "authorization" not in api.requests("/videos/t1.mp4")[0].headers


def test_download_by_url_into_a_folder(client, api, tmp_path):
    api.files["/videos/x.mp4"] = b"\x00\x00\x00\x18ftypmp42"
    path = client.download(f"{api.base_url}/videos/x.mp4", tmp_path)
    assert path.parent == tmp_path and path.suffix == ".mp4"
    assert path.read_bytes() == b"\x00\x00\x00\x18ftypmp42"


@pytest.mark.parametrize("wire", ["memory", "socket"])
def test_download_cut_mid_body_leaves_no_partial_file(make_client, api, api_server, tmp_path,
                                                      wire):
    service = api_server if wire == "socket" else api
    client = make_client(service, max_retries=0)
    service.files["/videos/t1.mp4"] = video_bytes()
    service.script("/videos/t1.mp4", Reply(body=video_bytes(), cut_after=100_000))
    destination = tmp_path / "clip.mp4"
    with pytest.raises(NetworkError):
        client.download(f"{service.base_url}/videos/t1.mp4", destination)
    assert list(tmp_path.iterdir()) == []
    destination.write_bytes(b"previous video")
    service.script("/videos/t1.mp4", Reply(body=video_bytes(), cut_after=10))
    with pytest.raises(NetworkError):
        client.download(f"{service.base_url}/videos/t1.mp4", destination)
    assert destination.read_bytes() == b"previous video"
    assert list(tmp_path.iterdir()) == [destination]


def test_download_errors(client, api, tmp_path):
    with pytest.raises(ApiframeError) as caught:
        client.download(f"{api.base_url}/videos/none.mp4", tmp_path / "a.mp4")
    assert caught.value.status_code == 404
    running = Task.from_json({"task_id": "t", "status": "processing"})
    with pytest.raises(ApiframeError, match="no video yet"):
        client.download(running, tmp_path / "b.mp4")
    with pytest.raises(ApiframeError, match="http"):
        client.download("file:///etc/passwd", tmp_path / "c.mp4")
    assert list(tmp_path.iterdir()) == []


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "masked"),
    [("sk-live-1234567890abcd", "…abcd"), (None, "(not set)"), ("", "(not set)"), ("abc", "…")],
)
def test_mask_secret(secret, masked):
    assert mask_secret(secret) == masked


def test_the_key_never_appears_in_repr_errors_logs_or_tracebacks(make_client, api, caplog,
                                                                  store):
    caplog.set_level(logging.DEBUG)
    client = make_client(timeout=0.3, max_retries=1)
    refused = ApiframeClient(TEST_API_KEY, closed_port_url(), store=store, max_retries=0)
    assert TEST_API_KEY not in repr(client)
    assert "…7f3a" in repr(client)

    def echo(seen):
        return f"bad request from key {seen.headers['authorization']}"

    api.script("/fetch", Reply(500, body=echo), Reply(500, body=echo))
    api.script("/account", Reply(body=echo))
    api.script("/fetch-many", Reply(400, json=lambda s: {"errors": [{"msg": echo(s)}]}))
    api.script("/runway-imagine", Reply(json={"task_id": "x"}, delay=1.0))
    failures = []
    calls = [
        lambda: client.fetch("t1"),
        lambda: client.account(),
        lambda: client.fetch_batch(["a", "b"]),
        lambda: client.imagine(prompt="p"),
        lambda: refused.fetch("t"),
        lambda: make_client(api_key=TEST_API_KEY[::-1]).account(),
    ]
    for call in calls:
        with pytest.raises(ApiframeError) as caught:
            call()
        failures.append(caught.value)
    assert api.count() >= 5
    assert "…7f3a" in str(failures[0])  # the echoed key was there, and was masked
    for failure in failures:
        text = "".join(traceback.format_exception(failure))
        assert TEST_API_KEY not in text
        assert TEST_API_KEY not in str(failure.body)
    assert caplog.records and TEST_API_KEY not in caplog.text
    refused.close()


# -- the demo backend -------------------------------------------------------------------------


@pytest.fixture
def demo_server():
    """Half-second demo jobs on the real clock: the whole job, as a user's client sees it."""
    from runway_widget.demo import DemoServer

    with DemoServer(job_seconds=0.5) as server:
        yield server


def test_demo_client_runs_a_whole_job(demo_client, tmp_path):
    assert demo_client.is_demo
    task_id = demo_client.imagine(prompt="a lighthouse in a storm", duration=5, aspect_ratio="1:1")
    task = demo_client.wait(task_id, timeout=60, poll_interval=0.1)
    assert task.is_finished and task.video_url
    path = demo_client.download(task, tmp_path / "demo.mp4")
    assert path.read_bytes()[4:8] == b"ftyp"
    assert demo_client.store.get(task_id).local_path == str(path.resolve())


def test_demo_constructor_uses_the_shared_demo_server(store):
    from runway_widget.demo import shared_demo_server

    with ApiframeClient.demo(store=store) as client:
        server = shared_demo_server()
        assert client.is_demo
        assert client.base_url == server.base_url
        assert client.account()["email"]
