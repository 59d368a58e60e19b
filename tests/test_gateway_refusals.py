"""Every refusal of the gateway carries a machine-readable code; the client maps codes.

The gateway side runs on a real gateway (the demo backend, or `ApiServer` as an upstream
that fails on cue); the client side reads a gateway's refusals from `ApiServer` scripted to
send them, so the mapping is proven on the wire a client sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runway_widget.errors import (
    BadRequestError,
    KeyRefusedError,
    QuotaExceededError,
    SubmissionUnknownError,
)
from runway_widget.gateway.upstream import Upstream
from runway_widget.models import RefusalCode
from tests.api_server import TEST_API_KEY, ApiServer, Reply, error
from tests.fake_clock import FakeClock
from tests.gateway_support import (
    call,
    demo_gateway,
    ended,
    gateway_on,
    participant,
    upstream_client,
)

pytestmark = pytest.mark.timeout(120)

TEXT2VIDEO = {"prompt": "a kite", "generation_type": "text2video"}


def _code(reply) -> str:
    [first, *_] = reply.json()["errors"]
    assert first["msg"], reply.text  # the message for people stays
    return first["code"]


def test_every_refusal_of_a_request_names_its_reason(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        token = participant(gateway, tmp_path, jobs=0).api_key
        revoked = participant(gateway, tmp_path, "rita").api_key
        gateway.roster.revoke("rita")
        cases = [
            (("POST", "/fetch", None), {}, 401, "unauthorized"),
            (("POST", "/fetch", "rwg_nobody"), {}, 401, "unauthorized"),
            (("POST", "/fetch", revoked), {}, 401, "token_revoked"),
            (("POST", "/fetch", token), {"data": b"{not json"}, 400, "invalid_request"),
            (("POST", "/fetch", token), {"data": b"x" * 70_000}, 413, "invalid_request"),
            (("POST", "/fetch", token), {"json": {"task_id": "t-none"}}, 404, "not_found"),
            (("GET", "/no-such-route", token), {}, 404, "not_found"),
            (("GET", "/fetch", token), {}, 405, "invalid_request"),
            (("POST", "/runway-imagine", token), {"json": {"prompt": ""}}, 400, "invalid_request"),
            (("POST", "/runway-imagine", token), {"json": TEXT2VIDEO}, 403, "quota_exceeded"),
            (
                ("POST", "/runway-imagine", token),
                {"json": {**TEXT2VIDEO, "webhook_url": "http://127.0.0.1:9/hook"}},
                400,
                "webhook_target_refused",
            ),
        ]
        for (method, path, who), kwargs, status, code in cases:
            reply = call(gateway, method, path, who, **kwargs)
            assert (reply.status_code, _code(reply)) == (status, code), (path, kwargs)


def test_callers_too_fast_are_told_so_by_code(tmp_path):
    with demo_gateway(tmp_path, rate=0.5, burst=1) as gateway:
        token = participant(gateway, tmp_path).api_key
        replies = [call(gateway, "GET", "/account", token) for _ in range(2)]
        joins = [
            call(gateway, "POST", "/join", json={"code": "none", "name": "x"}) for _ in range(11)
        ]  # ten wrong codes are checked, the eleventh is not
    assert [r.status_code for r in replies] == [200, 429]
    assert _code(replies[1]) == "rate_limited"
    assert [_code(r) for r in joins][-1] == "rate_limited"
    assert _code(joins[0]) == "join_code_unknown"


@pytest.mark.parametrize(
    ("replies", "status", "code"),
    [
        ([error(503, "down")] * 3, 503, "upstream_unavailable"),
        ([error(429, "slow down", **{"Retry-After": "1"})] * 3, 429, "upstream_busy"),
        ([error(500, "boom")], 504, "submission_unknown"),
        ([error(401, "Invalid API key")], 502, "upstream_key_refused"),
        ([error(418, "teapot")], 502, "upstream_refused"),
        ([error(400, "prompt is too long")], 400, "invalid_request"),
    ],
    ids=["503", "429", "500", "401", "418", "400"],
)
def test_without_the_queue_an_upstream_failure_names_its_reason(tmp_path, replies, status, code):
    clock = FakeClock()  # the gateway's client waits out a Retry-After on it, at once
    with ApiServer() as api:
        client = upstream_client(
            api.base_url, TEST_API_KEY, tmp_path, clock=clock, sleep=clock.sleep
        )
        with gateway_on(Upstream(client), tmp_path, queue=False) as gateway:
            token = participant(gateway, tmp_path).api_key
            api.script("/runway-imagine", *replies)
            reply = call(gateway, "POST", "/runway-imagine", token, json=TEXT2VIDEO)
    assert (reply.status_code, _code(reply)) == (status, code)
    assert TEST_API_KEY not in reply.text


@pytest.mark.parametrize(
    ("reply", "state", "said"),
    [
        (error(500, "boom"), "unknown", "may or may not have been created"),
        (error(401, "Invalid API key"), "refused", "upstream key was refused"),
        (error(418, "teapot"), "refused", "the upstream refused: unexpected reply"),
        (error(400, "prompt is too long"), "refused", "the upstream refused: prompt is too long"),
    ],
    ids=["500", "401", "418", "400"],
)
def test_with_the_queue_an_upstream_failure_ends_the_task_with_its_reason(
    tmp_path, reply, state, said
):
    with ApiServer() as api:
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path) as gateway:
            token = participant(gateway, tmp_path).api_key
            api.script("/runway-imagine", reply)
            submitted = call(gateway, "POST", "/runway-imagine", token, json=TEXT2VIDEO)
            task_id = submitted.json()["task_id"]
            assert ended(gateway, task_id).state == state
            task = call(gateway, "POST", "/fetch", token, json={"task_id": task_id}).json()
    assert submitted.status_code == 200
    assert task["status"] == "failed" and said in task["message"]
    assert TEST_API_KEY not in task["message"]


def test_the_codes_the_gateway_may_send_are_the_documented_ones():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("**Refusals carry a code.**", 1)[1].split("\n\n", 2)[1]
    documented = {
        code
        for row in table.splitlines()[2:]
        for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])
    }
    assert documented == {code.value for code in RefusalCode}


# -- the client's side -------------------------------------------------------------------------


def _refusal(status: int, code: str, msg: str = "refused", **extra: str) -> Reply:
    return Reply(status, json={"errors": [{"msg": msg, "code": code, **extra}]})


def _client(api: ApiServer, tmp_path):
    return upstream_client(api.base_url, TEST_API_KEY, tmp_path, max_retries=0)


def test_the_client_tells_a_revoked_token_from_an_unknown_one(tmp_path):
    with ApiServer() as api:
        client = _client(api, tmp_path)
        api.script("/account", _refusal(401, "token_revoked", "this workshop token was revoked"))
        with pytest.raises(KeyRefusedError, match="revoked your workshop token") as revoked:
            client.account()
        api.script("/account", _refusal(401, "unauthorized", "Invalid API key"))
        with pytest.raises(KeyRefusedError) as unknown:
            client.account()
    assert "revoked" not in str(unknown.value)
    assert str(unknown.value).startswith("the workshop gateway does not know this token")
    assert (revoked.value.refusal, unknown.value.refusal) == ("token_revoked", "unauthorized")
    assert revoked.value.body["errors"][0]["msg"] == "this workshop token was revoked"


def test_the_client_maps_codes_never_messages(tmp_path):
    with ApiServer() as api:
        client = _client(api, tmp_path)
        # a quota refusal in other words is still a quota refusal ...
        api.script(
            "/runway-imagine", _refusal(403, "quota_exceeded", "plus de crédits", limit="credits")
        )
        with pytest.raises(QuotaExceededError, match="plus de crédits") as quota:
            client.imagine(**TEXT2VIDEO)
        # ... and a message that reads like one, without the code, is not
        api.script("/runway-imagine", error(403, "quota reached: all 1 jobs are used"))
        with pytest.raises(KeyRefusedError):
            client.imagine(**TEXT2VIDEO)
        api.script("/runway-imagine", _refusal(504, "submission_unknown", "no answer"))
        with pytest.raises(SubmissionUnknownError, match="may or may not exist"):
            client.imagine(**TEXT2VIDEO)
        api.script("/fetch", _refusal(413, "invalid_request", "the body is too large"))
        with pytest.raises(BadRequestError, match="too large"):
            client.fetch("t-1")
    assert quota.value.limit == "credits"
