"""The gateway over real HTTP, on the demo backend: the API, quotas, isolation, bad input."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
import requests

from runway_widget.errors import (
    AuthenticationError,
    QuotaExceededError,
    TaskNotFoundError,
    ValidationError,
)
from tests.gateway_support import call, demo_gateway, participant, upstream_id

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def gateway(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        yield gateway


def test_a_job_runs_through_the_gateway_and_its_clip_is_served_from_it(gateway, tmp_path):
    alice = participant(gateway, tmp_path, "alice", jobs=3)
    task_id = alice.imagine(prompt="a lighthouse in a storm", generation_type="text2video")
    task = alice.wait(task_id, timeout=60, poll_interval=0.2)
    assert task.is_finished and task.video_url.startswith(gateway.base_url + "/videos/")
    whole = requests.get(task.video_url, timeout=10)
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert whole.content[4:8] == b"ftyp"
    part = requests.get(task.video_url, headers={"Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206 and len(part.content) == 100
    assert part.headers["Content-Range"].endswith(f"/{len(whole.content)}")
    # fetched once into the gateway's store: the upstream's copy may go away
    gateway.upstream.demo.stop()
    assert requests.get(task.video_url, timeout=10).content == whole.content


def test_account_reports_the_participants_own_quota(gateway, tmp_path):
    bob = participant(gateway, tmp_path, "bob", jobs=2, credits=20)
    bob.imagine(prompt="a cat", generation_type="text2video", duration=10)
    info = bob.account()
    assert info == {
        "email": "bob",
        "credits": 10,
        "total_images": 1,
        "plan": "workshop",
        "jobs_left": 1,
        "running": info["running"],
        "queued": info["queued"],
    }
    assert info["running"] + info["queued"] == 1  # sent upstream by now, or still waiting


def test_another_participants_task_answers_exactly_like_an_unknown_one(gateway, tmp_path):
    alice = participant(gateway, tmp_path)
    mallory = participant(gateway, tmp_path)
    task_id = alice.imagine(prompt="mine", generation_type="text2video")
    theirs = call(gateway, "POST", "/fetch", mallory.api_key, json={"task_id": task_id})
    unknown = call(gateway, "POST", "/fetch", mallory.api_key, json={"task_id": "no-such-id"})
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    assert theirs.status_code == 404
    with pytest.raises(TaskNotFoundError):
        mallory.fetch(task_id)
    many = call(
        gateway, "POST", "/fetch-many", mallory.api_key, json={"task_ids": [task_id, "no-such-id"]}
    )
    assert many.json() == {"tasks": []}
    assert alice.fetch(task_id).task_id == task_id


def test_unknown_missing_and_revoked_tokens_get_401(gateway, tmp_path):
    carol = participant(gateway, tmp_path, "carol")
    assert carol.account()["email"] == "carol"
    bearer = call(gateway, "GET", "/account", headers={"Authorization": f"Bearer {carol.api_key}"})
    assert bearer.status_code == 200
    for token in (None, "rwg_not-a-token", carol.api_key + "x", "x" * 5000):
        reply = call(gateway, "GET", "/account", token)
        assert reply.status_code == 401
        assert reply.json() == {"errors": [{"msg": "Invalid API key", "code": "unauthorized"}]}
    assert gateway.roster.revoke("carol")
    revoked = call(gateway, "GET", "/account", carol.api_key)
    assert revoked.status_code == 401
    assert revoked.json()["errors"][0]["code"] == "token_revoked"
    with pytest.raises(AuthenticationError, match="the instructor revoked your workshop token"):
        carol.account()


def test_over_quota_is_a_quota_error_and_nothing_goes_upstream(gateway, tmp_path):
    dave = participant(gateway, tmp_path, jobs=1)
    upstream_id(gateway, dave.imagine(prompt="one", generation_type="text2video"))  # sent
    before = gateway.upstream.demo.stats.get("/runway-imagine", 0)
    with pytest.raises(QuotaExceededError, match="the 1 job of your quota is used"):
        dave.imagine(prompt="two", generation_type="text2video")
    assert gateway.upstream.demo.stats.get("/runway-imagine", 0) == before
    reply = call(
        gateway,
        "POST",
        "/runway-imagine",
        dave.api_key,
        json={"prompt": "three", "generation_type": "text2video"},
    )
    assert reply.status_code == 403
    (error,) = reply.json()["errors"]
    assert error["msg"].startswith("quota reached: ")
    assert (error["code"], error["limit"]) == ("quota_exceeded", "jobs")


def test_credit_and_concurrency_limits_name_what_ran_out(gateway, tmp_path):
    erin = participant(gateway, tmp_path, credits=12)
    erin.imagine(prompt="five", generation_type="text2video", duration=5)
    with pytest.raises(QuotaExceededError, match="7 credits left, this job needs 10") as credits:
        erin.imagine(prompt="ten", generation_type="text2video", duration=10)
    assert credits.value.limit == "credits"
    frank = participant(gateway, tmp_path, concurrent=1)
    frank.imagine(prompt="first", generation_type="text2video")
    once = "1 job is already running, the most you may run at once; wait until it finishes"
    with pytest.raises(QuotaExceededError, match=once) as running:
        frank.imagine(prompt="second", generation_type="text2video")
    assert running.value.limit == "concurrent"


def test_bad_bodies_get_4xx_in_the_apis_error_shape(gateway, tmp_path):
    token = participant(gateway, tmp_path).api_key
    cases = [
        ("POST", "/fetch", {"data": b"{not json"}, 400),
        ("POST", "/fetch", {"data": b"[1, 2]"}, 400),
        ("POST", "/fetch", {"json": {"task_id": 7}}, 400),
        ("POST", "/fetch", {"data": b'{"task_id": "' + b"x" * 70_000 + b'"}'}, 413),
        ("POST", "/fetch-many", {"json": {"task_ids": ["one"]}}, 400),
        ("POST", "/fetch-many", {"json": {"task_ids": [str(i) for i in range(21)]}}, 400),
        ("POST", "/runway-imagine", {"json": {"prompt": "", "generation_type": "x"}}, 400),
        ("POST", "/upload", {"files": {"other": ("a.png", b"x")}}, 400),
        ("GET", "/fetch", {}, 405),
        ("GET", "/no-such-route", {}, 404),
    ]
    for method, path, kwargs, status in cases:
        reply = call(gateway, method, path, token, **kwargs)
        assert reply.status_code == status, (path, kwargs, reply.text)
        errors = reply.json()["errors"]
        assert errors and all(isinstance(e["msg"], str) and e["msg"] for e in errors)
    huge = call(gateway, "POST", "/fetch", token, data=b"x" * (4 * 1024 * 1024))
    assert huge.status_code in (400, 413)


def test_validation_problems_come_back_from_the_gateway(gateway, tmp_path):
    token = participant(gateway, tmp_path).api_key
    reply = call(
        gateway,
        "POST",
        "/runway-imagine",
        token,
        json={"prompt": "x", "generation_type": "image2video"},
    )
    assert reply.status_code == 400
    assert "image_url is required for image2video" in json.dumps(reply.json())
    assert gateway.report()[0]["jobs_used"] == 0


def test_a_participant_polling_too_fast_is_told_when_to_come_back(tmp_path):
    with demo_gateway(tmp_path, rate=2.0, burst=3) as gateway:
        token = participant(gateway, tmp_path).api_key
        statuses = [call(gateway, "GET", "/account", token) for _ in range(6)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1
        assert limited[0].json()["errors"][0]["msg"].startswith("too many requests")
        other = participant(gateway, tmp_path).api_key
        assert call(gateway, "GET", "/account", other).status_code == 200


def test_join_code_gives_tokens_with_its_quota_while_seats_remain(gateway):
    gateway.roster.add_join_code("room-42", 2, _limits(jobs=1))
    first = call(gateway, "POST", "/join", json={"code": "room-42", "name": "gina"})
    second = call(gateway, "POST", "/join", json={"code": "room-42", "name": "gina"})
    assert first.status_code == second.status_code == 200
    assert (first.json()["name"], second.json()["name"]) == ("gina", "gina-2")
    full = call(gateway, "POST", "/join", json={"code": "room-42", "name": "hal"})
    wrong = call(gateway, "POST", "/join", json={"code": "room-43", "name": "hal"})
    assert full.status_code == wrong.status_code == 403
    assert full.json()["errors"][0]["code"] == "room_full"
    assert wrong.json()["errors"][0]["code"] == "join_code_unknown"
    token = first.json()["token"]
    assert call(gateway, "GET", "/account", token).json()["jobs_left"] == 1


def test_upload_is_forwarded(gateway, tmp_path):
    token = participant(gateway, tmp_path).api_key
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    from runway_widget.client.apiframe import ApiframeClient

    client = ApiframeClient(token, gateway.base_url)
    with pytest.raises(ValidationError):  # the demo reads the image: these bytes are no PNG
        client.upload_image(png)
    from runway_widget.demo.samples import sample_path

    url = client.upload_image(sample_path("landscape.jpg"))
    assert url.startswith("http")


def test_upload_needs_a_job_left_and_then_never_reaches_the_upstream(gateway, tmp_path):
    from runway_widget.demo.samples import sample_path

    image = sample_path("landscape.jpg").read_bytes()
    uploads = lambda: gateway.upstream.demo.stats.get("/upload", 0)  # noqa: E731
    for limits, limit in (({"jobs": 0}, "jobs"), ({"jobs": 5, "credits": 0}, "credits")):
        token = participant(gateway, tmp_path, **limits).api_key
        before = uploads()
        reply = call(gateway, "POST", "/upload", token, files={"image": ("a.jpg", image)})
        assert reply.status_code == 403, reply.text
        [error] = reply.json()["errors"]
        assert (error["code"], error["limit"]) == ("quota_exceeded", limit)
        assert error["msg"].startswith("quota reached")
        assert uploads() == before
    spent = participant(gateway, tmp_path, jobs=1)
    spent.wait(
        spent.imagine(prompt="p", generation_type="text2video"), timeout=60, poll_interval=0.2
    )
    with pytest.raises(QuotaExceededError) as refused:
        spent.upload_image(image)
    assert refused.value.limit == "jobs"
    assert participant(gateway, tmp_path, jobs=1).upload_image(image).startswith("http")


def test_secrets_never_leave_the_gateway(tmp_path, caplog):
    with demo_gateway(tmp_path, allow_private_webhooks=True) as gateway:
        _secrets_stay_in(gateway, tmp_path, caplog)


def _secrets_stay_in(gateway, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    upstream_key = gateway.upstream.client.api_key
    ivan = participant(gateway, tmp_path, "ivan", jobs=1)
    bodies = []
    task_id = ivan.imagine(
        prompt="p",
        generation_type="text2video",
        webhook_url="http://127.0.0.1:9/hook",  # nobody listens there
        webhook_secret="hook-s3cret",
    )
    ivan.wait(task_id, timeout=60, poll_interval=0.2)
    for method, path, kwargs in [
        ("GET", "/account", {}),
        ("POST", "/fetch", {"json": {"task_id": task_id}}),
        ("POST", "/runway-imagine", {"json": {"prompt": "q", "generation_type": "text2video"}}),
        ("POST", "/fetch", {"json": {"task_id": "nope"}}),
    ]:
        bodies.append(call(gateway, method, path, ivan.api_key, **kwargs).text)
    dump = "\n".join(sqlite3.connect(tmp_path / "gateway.sqlite3").iterdump())
    written = "\n".join(  # the journals, and anything else written in the home
        p.read_text(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix not in (".mp4", ".sqlite3", ".jpg", ".png")
    )
    for secret in (upstream_key, ivan.api_key, "hook-s3cret"):
        assert all(secret not in body for body in bodies)
        assert secret not in caplog.text
        assert secret not in dump
        assert secret not in written
    assert '"participant": "ivan"' in caplog.text  # the access log names, never tokens


def _limits(**kwargs):
    from runway_widget.gateway.db.roster import Limits

    return Limits(**kwargs)


def test_with_a_public_url_the_upstream_pushes_to_the_gateways_own_webhook(tmp_path):
    from tests.gateway_support import free_port

    port = free_port()
    with demo_gateway(
        tmp_path, job_seconds=2.0, port=port, public_url=f"http://127.0.0.1:{port}"
    ) as gateway:
        uma = participant(gateway, tmp_path)
        task_id = uma.imagine(prompt="pushed", generation_type="text2video")
        task = uma.wait(task_id, timeout=60, poll_interval=0.2)
        assert task.video_url.startswith(f"http://127.0.0.1:{port}/videos/")
        assert gateway.upstream.demo.webhook_stats.get("delivered", 0) >= 1
        forged = call(
            gateway,
            "POST",
            "/upstream-webhook",
            json={"task_id": task_id, "status": "failed"},
            headers={"x-webhook-secret": "guess"},
        )
        assert forged.status_code == 401
        assert uma.fetch(task_id).is_finished
