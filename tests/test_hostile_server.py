"""The client and tracker against a server that misbehaves on purpose (see `hostile_server`).

Each test names the failure it guards against: a call that never ends, a reply read into
memory without limit, a number that breaks parsing, a redirect that resends a body, a
loopback URL the kernel should never read, an unknown id said the "wrong" way, a secret
that leaks in one of its many spellings.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator

import pytest
from api_server import ApiServer
from hostile_server import (
    HostileServer,
    elapsed,
    flood,
    json_reply,
    raw_json_reply,
    response_bytes,
    send,
    trickle,
)

import runway_widget
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.errors import (
    ApiframeError,
    ApiStatusError,
    AuthenticationError,
    BadRequestError,
    KeyRefusedError,
    NetworkError,
    NoReplyError,
    RedirectError,
    SubmissionUnknownError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnexpectedReplyError,
    ValidationError,
)
from runway_widget.models import Task
from runway_widget.store import JobStore

KEY = "sk-hostile-Qw3rty-0123456789"
STAGED = {"task_id": "t1", "task_type": "runway", "status": "staged"}


@pytest.fixture
def bad() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def make_client(bad: HostileServer, client_for):
    def make(**options) -> ApiframeClient:
        options.setdefault("api_key", KEY)
        options.setdefault("timeout", 2.0)
        options.setdefault("requests_per_second", float("inf"))
        options.setdefault("backoff_factor", 0.01)
        options.setdefault("max_retries", 1)
        return client_for(bad, **options)

    return make


# -- the kernel reads only from its own backend --------------------------------------------------


def test_own_backend_is_the_loopback_base_url_only(make_client, bad):
    client = make_client()
    port = bad.base_url.rsplit(":", 1)[1]
    assert client.is_own_backend(f"{bad.base_url}/videos/a.mp4")
    assert client.is_own_backend(f"HTTP://127.0.0.1:{port}/x")
    assert not client.is_own_backend(f"http://127.0.0.1:{int(port) + 1}/videos/a.mp4")
    assert not client.is_own_backend(f"https://127.0.0.1:{port}/videos/a.mp4")
    assert not client.is_own_backend(f"http://10.0.0.1:{port}/a.mp4")
    assert not client.is_own_backend("http://169.254.169.254/latest/meta-data")
    assert not client.is_own_backend(f"file://{bad.base_url}")
    assert not client.is_own_backend(None)
    assert not client.is_own_backend("http://127.0.0.1:99999999/a.mp4")
    remote = make_client(base_url="https://api.apiframe.pro")
    assert not remote.is_own_backend("https://api.apiframe.pro/videos/a.mp4")  # not loopback


def test_the_panel_never_reads_a_loopback_video_of_another_port(tmp_path):
    """A server reply pointing at another local service: the kernel must not fetch it."""
    pytest.importorskip("ipywidgets")
    from widget_helpers import wait_for

    from runway_widget.tracking.tracker import TaskTracker
    from runway_widget.widget import RunwayPanel

    with ApiServer() as api, ApiServer(api_key=None) as internal:
        internal.files["/secret.mp4"] = b"internal data"
        api.files["/videos/own.mp4"] = b"\x00\x00\x00\x18ftypmp42own video"
        secret_url = internal.base_url + "/secret.mp4"
        api.add_task("elsewhere", {"status": "finished", "video_url": secret_url})
        api.add_task("own", {"status": "finished", "video_url": api.base_url + "/videos/own.mp4"})
        client = ApiframeClient(
            api_key=api.api_key, base_url=api.base_url, store=JobStore(tmp_path / "j.jsonl")
        )
        tracker = TaskTracker(client, min_interval=0.05, max_interval=0.5)
        panel = RunwayPanel(client=client, tracker=tracker)
        try:
            far, near = panel.attach("elsewhere"), panel.attach("own")
            wait_for(lambda: far.state == "finished" and near.state == "finished", "both to end")
            far_view, near_view = panel.view(far), panel.view(near)
            for view in (far_view, near_view):
                view.act("open")
            wait_for(lambda: near_view.video, "the own backend's video to be read")
            assert bytes(near_view.video).endswith(b"own video")
            wait_for(lambda: far_view.video_src, "the other URL handed to the browser")
            assert internal.count() == 0, "the kernel fetched a URL of another local service"
            assert bytes(far_view.video) == b""
        finally:
            panel.close()
            tracker.stop()
            client.close()


# -- the error tree ------------------------------------------------------------------------------


def test_errors_come_from_the_package_root_in_two_families():
    assert runway_widget.ApiframeError is ApiframeError
    for name in ("NetworkError", "SubmissionUnknownError"):
        assert issubclass(getattr(runway_widget, name), NoReplyError)
    for name in ("RateLimitError", "ServerError", "TaskNotFoundError", "RedirectError",
                 "BadRequestError", "KeyRefusedError", "UnexpectedReplyError"):
        assert issubclass(getattr(runway_widget, name), ApiStatusError)
    assert issubclass(BadRequestError, ValidationError)
    assert issubclass(KeyRefusedError, AuthenticationError)
    assert not issubclass(NoReplyError, ApiStatusError)


def test_a_400_and_a_401_are_status_errors_of_their_spec_names(make_client, bad):
    client = make_client()
    bad.route("/account", send(json_reply({"errors": [{"msg": "nope"}]}, 400)))
    with pytest.raises(ValidationError) as caught:
        client.account()
    assert isinstance(caught.value, ApiStatusError) and caught.value.status_code == 400
    bad.route("/account", send(json_reply({"errors": [{"msg": "Invalid API key"}]}, 401)))
    with pytest.raises(AuthenticationError) as refused:
        client.account()
    assert isinstance(refused.value, ApiStatusError) and refused.value.status_code == 401


# -- POSTs never follow redirects ----------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_submission_is_never_redirected(make_client, bad, status):
    with HostileServer() as elsewhere:
        elsewhere.route("/runway-imagine", send(json_reply({"task_id": "stolen"})))
        location = f"{elsewhere.base_url}/runway-imagine"
        bad.route("/runway-imagine", send(response_bytes(status, b"", {"Location": location})))
        client = make_client()
        with pytest.raises(RedirectError) as caught:
            client.imagine(prompt="a cat", webhook_url="https://example.com/hook",
                           webhook_secret="whsec-do-not-resend-1234")
        assert elsewhere.count() == 0, "the body (and its webhook secret) was sent elsewhere"
        assert bad.count("/runway-imagine") == 1
        message = str(caught.value)
        assert f"HTTP {status}" in message and elsewhere.base_url.split("//")[1] in message
        assert "whsec" not in message and KEY not in message
        assert not isinstance(caught.value, NoReplyError)


def test_reads_are_not_redirected_either(make_client, bad):
    with HostileServer() as elsewhere:
        elsewhere.route("/fetch", send(json_reply(STAGED)))
        moved = {"Location": elsewhere.base_url + "/fetch"}
        bad.route("/fetch", send(response_bytes(307, b"", moved)))
        with pytest.raises(RedirectError):
            make_client().fetch("t1")
        assert elsewhere.count() == 0


# -- every call ends -----------------------------------------------------------------------------


def test_a_trickled_reply_cannot_hold_fetch_past_its_deadline(make_client, bad):
    body = json_reply(STAGED)  # ~120 bytes at 5 a second: 25 s if the client waited
    bad.route("/fetch", trickle(body, every=0.2))
    took, outcome = elapsed(lambda: make_client(deadline=0.5, max_retries=0).fetch("t1"))
    assert isinstance(outcome, NetworkError), outcome
    assert "deadline" in str(outcome)
    assert took < 10


def test_trickled_headers_cannot_hold_a_call_either(make_client, bad):
    bad.route("/account", trickle(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 500, every=0.1))
    took, outcome = elapsed(lambda: make_client(deadline=0.4, max_retries=0).account())
    assert isinstance(outcome, NetworkError), outcome
    assert took < 10


def test_wait_with_a_timeout_ends_on_time_against_a_trickling_server(make_client, bad):
    bad.route("/fetch", trickle(json_reply(STAGED), every=0.5))
    took, outcome = elapsed(lambda: make_client().wait("t1", timeout=0.6, poll_interval=0.1))
    assert isinstance(outcome, TaskTimeoutError), outcome
    assert took < 10


def test_a_trickled_submission_is_unknown_not_lost(make_client, bad):
    bad.route("/runway-imagine", trickle(json_reply({"task_id": "t9"}), every=0.3))
    took, outcome = elapsed(lambda: make_client(deadline=0.4).imagine(prompt="a cat"))
    assert isinstance(outcome, SubmissionUnknownError), outcome
    assert bad.count("/runway-imagine") == 1
    assert took < 10


def test_an_endless_reply_is_refused_not_read_into_memory(make_client, bad):
    bad.route("/fetch-many", flood())
    took, outcome = elapsed(lambda: make_client(deadline=30).fetch_batch(["a", "b"]))
    assert isinstance(outcome, UnexpectedReplyError), outcome
    assert "limit" in str(outcome)
    assert took < 30


def test_a_reply_announcing_100_mb_is_refused_before_reading(make_client, bad):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    bad.route("/account", send(head + b"Content-Length: 104857600\r\n\r\n{"))
    with pytest.raises(UnexpectedReplyError, match="104,857,600"):
        make_client().account()


def test_a_download_has_a_size_limit(make_client, bad, tmp_path):
    body = b"\x00" * 300_000
    bad.route("/big.mp4", send(response_bytes(200, body, {"Content-Type": "video/mp4"})))
    bad.route("/endless.mp4", flood(b"", b"\x00" * 65536))
    client = make_client(download_limit=100_000)
    with pytest.raises(UnexpectedReplyError, match="too large"):
        client.download(f"{bad.base_url}/big.mp4", tmp_path / "big.mp4")
    with pytest.raises(UnexpectedReplyError, match="too large"):
        client.download(f"{bad.base_url}/endless.mp4", tmp_path / "endless.mp4")
    assert list(tmp_path.glob("*.mp4")) == list(tmp_path.glob(".*part")) == []


# 500 or 140 bytes a second, against 1000: cut in the body / in a header name (at 0.4 s)
@pytest.mark.parametrize("every", [0.002, 0.007])
def test_a_trickled_download_ends_with_a_clear_error(make_client, bad, tmp_path, every):
    bad.route("/slow.mp4", trickle(response_bytes(200, b"\x00" * 600), every=every))
    client = make_client(download_min_rate=1000, timeout=0.4)
    took, outcome = elapsed(lambda: client.download(f"{bad.base_url}/slow.mp4", tmp_path / "s.mp4"))
    assert isinstance(outcome, NetworkError), outcome
    assert "deadline" in str(outcome)
    assert took < 15
    assert not (tmp_path / "s.mp4").exists()


# -- numbers from outside ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e999", '"1e999"', '"inf"',
                                   '"NaN"', "9" * 400, '"' + "9" * 5000 + '"'])
def test_absurd_percentages_are_absent_not_an_overflow(make_client, bad, value):
    bad.route("/fetch", send(raw_json_reply(
        '{"task_id": "t1", "status": "processing", "percentage": ' + value + "}")))
    task = make_client().fetch("t1")
    assert task.status == "processing"
    assert task.percentage is None


def test_a_huge_integer_in_a_reply_is_a_clear_error(make_client, bad):
    bad.route("/fetch", send(raw_json_reply('{"task_id": "t1", "percentage": ' + "9" * 5000 + "}")))
    with pytest.raises(UnexpectedReplyError):
        make_client().fetch("t1")


@pytest.mark.parametrize("value", ["1e999", "Infinity", "NaN", "-5", "99999999999999999999"])
def test_an_absurd_retry_after_never_stops_anything(make_client, bad, value):
    reply = json_reply({"errors": [{"msg": "slow down"}]}, 429, **{"Retry-After": value})
    bad.route("/account", send(reply))
    with pytest.raises(ApiframeError) as caught:
        make_client(max_retries=0).account()
    retry_after = getattr(caught.value, "retry_after", None)
    assert retry_after is None or (math.isfinite(retry_after) and 0 <= retry_after <= 86400)


# -- unknown task ids, however the server says it ------------------------------------------------


def invalid_task_id_server(bad: HostileServer, known: set[str]) -> None:
    """/fetch and /fetch-many answer 400 "Invalid task_id" as soon as one id is unknown."""
    import json

    def fetch(handler) -> None:
        task_id = json.loads(handler_body(handler)).get("task_id")
        if task_id in known:
            handler.wfile.write(json_reply({**STAGED, "task_id": task_id}))
        else:
            handler.wfile.write(json_reply({"errors": [{"msg": "Invalid task_id"}]}, 400))

    def fetch_many(handler) -> None:
        ids = json.loads(handler_body(handler)).get("task_ids")
        if all(i in known for i in ids):
            handler.wfile.write(json_reply({"tasks": [{**STAGED, "task_id": i} for i in ids]}))
        else:
            handler.wfile.write(json_reply({"errors": [{"msg": "Invalid task_id"}]}, 400))

    bad.route("/fetch", fetch)
    bad.route("/fetch-many", fetch_many)


def handler_body(handler) -> bytes:
    return handler.owner.seen[-1].body


def test_a_400_invalid_task_id_is_task_not_found(make_client, bad):
    invalid_task_id_server(bad, {"t1"})
    with pytest.raises(TaskNotFoundError) as caught:
        make_client().fetch("ghost")
    assert caught.value.status_code == 400
    with pytest.raises(BadRequestError):  # a 400 about something else stays a bad request
        bad.route("/fetch", send(json_reply({"errors": [{"msg": "body must be JSON"}]}, 400)))
        make_client().fetch("t1")


def test_fetch_many_keeps_44_results_beside_one_unknown_id(make_client, bad):
    known = {f"t{i}" for i in range(44)}
    invalid_task_id_server(bad, known)
    ids = [*sorted(known)[:30], "ghost", *sorted(known)[30:]]
    tasks = make_client().fetch_many(ids)
    assert [t.task_id for t in tasks] == ids
    assert sum(t.status == "staged" for t in tasks) == 44
    (ghost,) = [t for t in tasks if t.task_id == "ghost"]
    assert ghost.is_failed and ghost.raw["not_found"]


def test_an_echoed_flood_of_an_id_is_cut_short(make_client, bad):
    invalid_task_id_server(bad, set())
    huge = "x" * 100_000
    with pytest.raises(TaskNotFoundError) as caught:
        make_client().fetch(huge)
    assert len(str(caught.value)) < 400
    assert caught.value.task_id == huge


def test_the_tracker_ends_a_task_the_server_calls_invalid(make_client, bad):
    from runway_widget.tracking.tracker import TaskTracker

    invalid_task_id_server(bad, {"t1", "t2"})
    ended = threading.Event()
    seen: list[Task] = []
    tracker = TaskTracker(make_client(), min_interval=0.05, max_interval=0.4)
    try:
        tracker.track("t1")
        tracker.track("t2")
        tracker.track("ghost", on_update=lambda t: (seen.append(t), ended.set()))
        assert ended.wait(20), "no callback for a task the server calls invalid"
        assert seen[-1].is_failed and "does not know" in seen[-1].message
        assert tracker.latest("t1").status == "staged"
    finally:
        tracker.stop()


# -- secrets, in every spelling ------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["\n", "\r\n", "  \n\t"])
def test_a_key_read_from_a_file_just_works(make_client, bad, ending):
    bad.route("/account", send(json_reply({"email": "e", "credits": 1})))
    assert make_client(api_key=KEY + ending).account()["credits"] == 1
    assert bad.seen[-1].headers["authorization"] == KEY


@pytest.mark.parametrize("key", [KEY[:10] + "\n" + KEY[10:], KEY[:10] + "\x00" + KEY[10:],
                                 KEY[:10] + "\x1b[31m" + KEY[10:], KEY + "é"])
def test_a_key_with_a_control_character_is_refused_before_sending(make_client, bad, key, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(api_key=key)
    for call in (client.account, lambda: client.imagine(prompt="a cat")):
        with pytest.raises(AuthenticationError) as caught:
            call()
        assert not isinstance(caught.value, SubmissionUnknownError)
        text = str(caught.value)
        assert "position" in text
        for part in (key, repr(key), KEY[:10], KEY[10:]):
            assert part not in text
    assert bad.count() == 0
    assert KEY[10:] not in caplog.text and KEY[10:] not in repr(client)


def test_a_key_echoed_in_any_spelling_is_scrubbed(make_client, bad):
    from urllib.parse import quote

    spellings = [KEY, repr(KEY + "\n"), quote(KEY, safe=""), f'"{KEY}"']
    bad.route("/account", send(json_reply({"errors": [{"msg": " | ".join(spellings)}]}, 500)))
    with pytest.raises(ApiframeError) as caught:
        make_client(max_retries=0, api_key=KEY + "\n").account()
    text = str(caught.value) + repr(caught.value.body)
    assert KEY not in text and quote(KEY, safe="") not in text
    assert KEY[:12] not in text


def test_a_key_echoed_inside_a_good_reply_never_reaches_the_caller(make_client, bad):
    echo = {**STAGED, "message": f"your key {KEY} looks fine", "video_url": f"https://x/{KEY}"}
    bad.route("/fetch", send(json_reply(echo)))
    task = make_client().fetch("t1")
    assert KEY not in repr(task.raw) and KEY not in (task.message or "")
    assert task.message.endswith("looks fine")


def test_a_webhook_secret_echoed_by_the_server_is_scrubbed(make_client, bad):
    secret = "whsec-Echo-Me-Back-9876"
    echo = {"errors": [{"msg": f"bad secret {secret}"}]}
    bad.route("/runway-imagine", send(json_reply(echo, 400)))
    with pytest.raises(ValidationError) as caught:
        make_client().imagine(prompt="a cat", webhook_url="https://example.com/h",
                              webhook_secret=secret)
    assert secret not in str(caught.value) + repr(caught.value.body)


def test_a_webhook_secret_read_from_a_file_just_works(make_client, bad):
    bad.route("/runway-imagine", send(json_reply({"task_id": "t9"})))
    make_client().imagine(prompt="a cat", webhook_url="https://example.com/h",
                          webhook_secret="whsec-from-a-file\r\n")
    assert b'"webhook_secret": "whsec-from-a-file"' in bad.seen[-1].body


def test_a_webhook_secret_with_a_line_break_is_refused_locally(make_client, bad):
    with pytest.raises(ValidationError, match="webhook_secret") as caught:
        make_client().imagine(prompt="a cat", webhook_url="https://example.com/h",
                              webhook_secret="whsec-abc\r\nX-Injected: 1")
    assert "whsec-abc" not in str(caught.value)
    assert bad.count() == 0
