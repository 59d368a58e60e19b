"""The webhook receiver over real HTTP: what it accepts, refuses, and never leaks."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import raw_sockets
import requests
from raw_sockets import idle_connections, peak_thread_growth, status_of

from runway_widget.demo import DemoServer
from runway_widget.models import Task
from runway_widget.tracking.webhooks import WebhookReceiver

SECRET = "s3cret-webhook-token-Zq81"
UPDATES = [
    {"task_id": "t-1", "task_type": "runway", "status": "staged", "percentage": None},
    {"task_id": "t-1", "task_type": "runway", "status": "processing", "percentage": "40"},
    {
        "task_id": "t-1",
        "task_type": "runway",
        "status": "finished",
        "percentage": 100,
        "video_url": "https://cdn.example/t-1.mp4",
    },
]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, max_body=10_000) as running:
        yield running


class Inbox:
    """A subscriber that records what it gets and lets a test wait for it."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self._changed = threading.Condition()

    def __call__(self, task: Task) -> None:
        with self._changed:
            self.tasks.append(task)
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.tasks), timeout)


def post(receiver: WebhookReceiver, payload, secret: str | None = SECRET) -> requests.Response:
    """POST a dict as JSON, or anything else (bytes, an iterator) as the raw body."""
    headers = {"x-webhook-secret": secret} if secret is not None else {}
    body = {"json": payload} if isinstance(payload, dict) else {"data": payload}
    return requests.post(receiver.local_url, headers=headers, timeout=10, **body)


def raw_exchange(receiver: WebhookReceiver, data: bytes) -> bytes:
    return raw_sockets.raw_exchange(urlsplit(receiver.local_url).port, data)


def test_valid_updates_reach_every_subscriber_in_order(receiver):
    first, second = Inbox(), Inbox()
    receiver.subscribe(first)
    receiver.subscribe(second)

    for update in UPDATES:
        reply = post(receiver, update)
        assert reply.status_code == 200
        assert reply.json() == {"ok": True}

    for inbox in (first, second):
        assert [(t.status, t.percentage) for t in inbox.tasks] == [
            ("staged", None),
            ("processing", 40),
            ("finished", 100),
        ]
        assert inbox.tasks[-1].video_url == "https://cdn.example/t-1.mp4"
        assert inbox.tasks[-1].raw["task_type"] == "runway"
    assert receiver.stats["accepted"] == 3
    assert receiver.stats["rejected"] == 0


def test_unsubscribe_stops_deliveries(receiver):
    inbox = Inbox()
    unsubscribe = receiver.subscribe(inbox)
    post(receiver, UPDATES[0])
    unsubscribe()
    unsubscribe()  # a second call is harmless
    assert post(receiver, UPDATES[1]).status_code == 200
    assert [t.status for t in inbox.tasks] == ["staged"]


def test_any_path_is_accepted(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    base = receiver.local_url.rsplit("/", 1)[0]
    reply = requests.post(
        f"{base}/behind/a/proxy?x=1", json=UPDATES[0], headers={"x-webhook-secret": SECRET}
    )
    assert reply.status_code == 200
    assert len(inbox.tasks) == 1


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper(), "x" * len(SECRET)],
    ids=["missing", "empty", "wrong", "longer", "shorter", "case", "same-length"],
)
def test_wrong_or_missing_secret_is_401_and_delivers_nothing(receiver, secret):
    inbox = Inbox()
    receiver.subscribe(inbox)
    reply = post(receiver, UPDATES[2], secret=secret)
    assert reply.status_code == 401
    assert reply.json()["ok"] is False
    assert inbox.tasks == []
    assert receiver.stats["rejected_by_reason"] == {"unauthorized": 1}
    assert receiver.stats["accepted"] == 0


def test_two_secret_headers_are_refused_even_if_one_is_right(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    body = json.dumps(UPDATES[0]).encode()
    reply = raw_exchange(
        receiver,
        b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
        b"x-webhook-secret: wrong\r\n"
        + f"x-webhook-secret: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert status_of(reply) == 401
    assert inbox.tasks == []


def test_secret_check_runs_before_the_body_is_considered(receiver):
    """An unauthenticated sender learns nothing about size limits or parsing."""
    assert post(receiver, b"x" * 50_000, secret="wrong").status_code == 401
    assert post(receiver, b"not json", secret="wrong").status_code == 401


def test_oversized_body_is_413_and_delivers_nothing(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    padded = dict(UPDATES[2], padding="x" * 20_000)
    reply = post(receiver, padded)
    assert reply.status_code == 413
    assert "10000" in reply.json()["error"]
    big = post(receiver, b"{" + b" " * 3_000_000 + b"}")
    assert big.status_code == 413
    assert inbox.tasks == []
    assert receiver.stats["rejected_by_reason"] == {"too_large": 2}


def test_body_of_exactly_max_body_is_accepted(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    body = json.dumps(UPDATES[1]).encode()
    body = body[:-1] + b" " * (receiver.max_body - len(body)) + b"}"
    assert len(body) == receiver.max_body
    assert post(receiver, body).status_code == 200
    assert len(inbox.tasks) == 1


def test_chunked_or_missing_length_is_411(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    body = json.dumps(UPDATES[0]).encode()
    chunked = post(receiver, iter([body]))  # a generator body is sent chunked
    assert chunked.status_code == 411
    no_length = raw_exchange(
        receiver,
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nx-webhook-secret: {SECRET}\r\n\r\n".encode() + body,
    )
    assert status_of(no_length) == 411
    assert inbox.tasks == []


@pytest.mark.parametrize("length", ["abc", "-5", "+5", "12, 13", "1e3", "²", "٣"])
def test_invalid_content_length_is_400(receiver, length):
    reply = raw_exchange(
        receiver,
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nx-webhook-secret: {SECRET}\r\n"
        f"Content-Length: {length}\r\n\r\n{{}}".encode(),
    )
    assert status_of(reply) == 400


@pytest.mark.parametrize("length", ["9" * 5000, "0" * 5000 + "10001"])
def test_absurd_content_length_is_413(receiver, length):
    reply = raw_exchange(
        receiver,
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nx-webhook-secret: {SECRET}\r\n"
        f"Content-Length: {length}\r\n\r\n{{}}".encode(),
    )
    assert status_of(reply) == 413
    assert receiver.stats["rejected_by_reason"] == {"too_large": 1}


def test_body_shorter_than_its_length_is_400(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    body = json.dumps(UPDATES[0]).encode()
    reply = raw_exchange(
        receiver,
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nx-webhook-secret: {SECRET}\r\n"
        f"Content-Length: {len(body) + 10}\r\n\r\n".encode()
        + body,
    )
    assert status_of(reply) == 400
    assert inbox.tasks == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe\x00garbage",
        b"",
        b"[" * 5000,
        b"[1, 2]",
        b'"a string"',
        b"null",
        b'{"status": "finished"}',
        b'{"task_id": 5, "status": "finished"}',
        b'{"task_id": "t-1"}',
        b'{"task_id": "t-1", "status": 3}',
    ],
    ids=[
        "text",
        "binary",
        "empty",
        "deep-nesting",
        "list",
        "string",
        "null",
        "no-task-id",
        "numeric-task-id",
        "no-status",
        "numeric-status",
    ],
)
def test_malformed_json_or_wrong_shape_is_400(receiver, body):
    inbox = Inbox()
    receiver.subscribe(inbox)
    reply = post(receiver, body)
    assert reply.status_code == 400
    assert reply.json()["ok"] is False
    assert inbox.tasks == []
    assert receiver.stats["accepted"] == 0
    assert receiver.stats["rejected"] == 1


def test_other_methods_are_405(receiver):
    reply = requests.get(receiver.local_url, headers={"x-webhook-secret": SECRET}, timeout=10)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "POST"


def test_a_failing_subscriber_breaks_nothing(receiver, caplog):
    caplog.set_level(logging.ERROR, logger="runway_widget.tracking.webhooks")
    inbox = Inbox()

    def broken(task: Task) -> None:
        raise RuntimeError("subscriber bug")

    receiver.subscribe(broken)
    receiver.subscribe(inbox)
    for update in UPDATES:
        assert post(receiver, update).status_code == 200
    assert [t.status for t in inbox.tasks] == ["staged", "processing", "finished"]
    failures = [r for r in caplog.records if r.name == "runway_widget.tracking.webhooks"]
    assert len(failures) == 3
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


def test_exact_duplicates_are_acknowledged_once_distinct_updates_keep_arrival_order(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    sixty = {"task_id": "t-1", "status": "processing", "percentage": "60"}
    forty = {"task_id": "t-1", "status": "processing", "percentage": "40"}
    other = {"task_id": "t-2", "status": "processing", "percentage": "60"}
    for update in (sixty, sixty, forty, other, forty):
        assert post(receiver, update).status_code == 200
    # Going backwards is the tracker's call to make; the receiver passes updates on as they come.
    assert [(t.task_id, t.percentage) for t in inbox.tasks] == [
        ("t-1", 60),
        ("t-1", 40),
        ("t-2", 60),
    ]
    assert receiver.stats["accepted"] == 3
    assert receiver.stats["duplicates"] == 2


def test_concurrent_senders_each_get_delivered(receiver):
    inbox = Inbox()
    receiver.subscribe(inbox)
    updates = [{"task_id": f"t-{i}", "status": "processing", "percentage": i} for i in range(30)]
    codes: list[int] = []

    def send(update):
        codes.append(post(receiver, update).status_code)

    senders = [threading.Thread(target=send, args=(u,)) for u in updates]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    assert codes == [200] * 30
    assert sorted(t.task_id for t in inbox.tasks) == sorted(u["task_id"] for u in updates)


GARBAGE = [
    b"\x00\x01\x02\xff" * 100,
    b"GET\r\n\r\n",
    b"POST\r\n\r\n",
    b"POST /webhook HTTP/9.9\r\n\r\n",
    b"POST /webhook HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    b"POST /webhook HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
    b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n",
    b"BREW /pot HTTP/1.1\r\n\r\n",
    b"POST /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    b"POST /webhook HTTP/1.1\r\nx-webhook-secret: \xe9\xff\r\nContent-Length: 2\r\n\r\n{}",
    b"",
]


def test_garbage_never_crashes_the_server_or_reaches_stderr(capfd):
    before = set(threading.enumerate())
    inbox = Inbox()
    with WebhookReceiver(SECRET) as receiver:
        receiver.subscribe(inbox)
        for data in GARBAGE + [os.urandom(4096) for _ in range(5)]:
            raw_exchange(receiver, data)
        assert post(receiver, UPDATES[0]).status_code == 200
    assert [t.status for t in inbox.tasks] == ["staged"]
    assert "error" not in receiver.stats["rejected_by_reason"]
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""
    assert set(threading.enumerate()) == before


def test_secret_never_appears_in_repr_logs_or_replies(caplog):
    caplog.set_level(logging.DEBUG)
    wrong_guess = "guess-" + SECRET[::-1]
    bodies = []
    with WebhookReceiver(SECRET, max_body=1000) as receiver:
        receiver.subscribe(lambda task: None)
        text = repr(receiver)
        assert SECRET not in text
        assert receiver.local_url in text
        for secret in (SECRET, wrong_guess, None):
            for payload in (UPDATES[1], b"nope", b"[" * 2000, UPDATES[1] | {"pad": "x" * 2000}):
                reply = post(receiver, payload, secret=secret)
                bodies.append(reply.text + str(reply.headers))
        bodies.append(requests.get(receiver.local_url, headers={"x-webhook-secret": SECRET}).text)
        bodies.append(raw_exchange(receiver, b"BREW / HTTP/1.1\r\n\r\n").decode("latin-1"))
    assert caplog.records, "the receiver logs its traffic at debug level"
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for needle in (SECRET, wrong_guess):
        assert needle not in logged
        assert all(needle not in body for body in bodies)
    assert SECRET not in repr(receiver)


def test_generated_secret_is_random_and_masked():
    one, two = WebhookReceiver(), WebhookReceiver()
    assert one.secret != two.secret
    assert len(one.secret) >= 32
    assert one.secret not in repr(one)
    assert "stopped" in repr(one)


@pytest.mark.parametrize("bad", ["", "  \n", "line\nbreak", "tab\there", "café-secret", 42])
def test_unusable_secret_is_refused_without_echoing_it(bad):
    with pytest.raises(ValueError) as info:
        WebhookReceiver(bad)
    if isinstance(bad, str) and bad.strip():
        assert bad.strip() not in str(info.value)


@pytest.mark.parametrize("given", ["whsec-from-a-file\n", "  whsec-from-a-file\r\n"])
def test_a_secret_read_from_a_file_loses_its_surrounding_whitespace(given):
    with WebhookReceiver(given) as receiver:
        assert receiver.secret == "whsec-from-a-file"
        inbox = Inbox()
        receiver.subscribe(inbox)
        assert post(receiver, UPDATES[0], secret="whsec-from-a-file").status_code == 200


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999", '"1e999"', "9" * 400])
def test_absurd_numbers_in_a_pushed_update_are_absent_not_a_500(receiver, number):
    inbox = Inbox()
    receiver.subscribe(inbox)
    body = '{"task_id": "t-inf", "status": "processing", "percentage": ' + number + "}"
    reply = post(receiver, body.encode())
    assert reply.status_code == 200
    assert inbox.wait_for(lambda tasks: tasks, timeout=10)
    assert inbox.tasks[-1].percentage is None


@pytest.mark.parametrize("url", ["tunnel.example/hook", "ftp://tunnel.example/hook", ""])
def test_public_url_must_be_http(url):
    with pytest.raises(ValueError):
        WebhookReceiver(public_url=url)


def test_urls(receiver):
    parts = urlsplit(receiver.local_url)
    assert parts.scheme == "http"
    assert parts.hostname == "127.0.0.1"
    assert parts.port and parts.port > 0
    assert parts.path == "/webhook"
    assert receiver.url == receiver.local_url

    public = WebhookReceiver(public_url="https://tunnel.example/hooks/runway")
    try:
        assert public.url == "https://tunnel.example/hooks/runway"
        assert public.local_url.startswith("http://127.0.0.1:")
        assert "tunnel.example" in repr(public)
    finally:
        public.stop()


def test_stop_leaves_no_threads_and_closes_the_port():
    before = set(threading.enumerate())
    receiver = WebhookReceiver(SECRET)
    assert set(threading.enumerate()) == before  # nothing runs until asked
    receiver.start()
    url = receiver.local_url
    parts = urlsplit(url)
    post(receiver, UPDATES[0])
    # A sender that stalls mid-request holds a connection thread; stop() must still end it.
    stalled = socket.create_connection((parts.hostname, parts.port))
    stalled.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
    try:
        assert any(t.name == "runway-widget-webhooks" for t in threading.enumerate())
        receiver.stop()
        assert set(threading.enumerate()) == before
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json=UPDATES[0], headers={"x-webhook-secret": SECRET}, timeout=5)
        receiver.stop()  # a second stop is harmless
    finally:
        stalled.close()


def test_can_start_again_after_stop():
    inbox = Inbox()
    receiver = WebhookReceiver(SECRET)
    receiver.subscribe(inbox)
    post(receiver, UPDATES[0])
    receiver.stop()
    with receiver:
        assert post(receiver, UPDATES[1]).status_code == 200
    assert [t.status for t in inbox.tasks] == ["staged", "processing"]


def test_a_subscriber_may_stop_the_receiver():
    before = set(threading.enumerate())
    receiver = WebhookReceiver(SECRET)
    receiver.subscribe(lambda task: receiver.stop())
    assert post(receiver, UPDATES[0]).status_code == 200
    receiver.stop()
    for thread in set(threading.enumerate()) - before:
        thread.join(5)
    assert set(threading.enumerate()) == before


def test_http_client_sender_with_duplicate_content_length_is_refused(receiver):
    parts = urlsplit(receiver.local_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("POST", "/webhook")
        conn.putheader("x-webhook-secret", SECRET)
        conn.putheader("Content-Length", "2")
        conn.putheader("Content-Length", "20")
        conn.endheaders(b"{}")
        assert conn.getresponse().status == 400
    finally:
        conn.close()


# End to end: the demo backend posts each change of a job to the receiver.


@pytest.fixture
def demo_server() -> Iterator[DemoServer]:
    """Half-second jobs on the real clock: the pushes run on the demo's threads of their own."""
    with DemoServer(job_seconds=0.5) as demo:
        yield demo


def submit(demo, **fields) -> str:
    body = {"prompt": "a lighthouse in a storm", "generation_type": "text2video", **fields}
    reply = requests.post(
        f"{demo.base_url}/runway-imagine",
        json=body,
        headers={"Authorization": demo.api_key},
        timeout=30,
    )
    reply.raise_for_status()
    return reply.json()["task_id"]


def finished(inbox: Inbox, task_id: str) -> bool:
    return inbox.wait_for(lambda tasks: any(t.task_id == task_id and t.is_done for t in tasks))


def test_demo_backend_pushes_each_change_through_to_finished(demo_server):
    inbox = Inbox()
    with WebhookReceiver() as receiver:
        receiver.subscribe(inbox)
        task_id = submit(demo_server, webhook_url=receiver.url, webhook_secret=receiver.secret)
        assert finished(inbox, task_id)
        fetched = requests.post(
            f"{demo_server.base_url}/fetch",
            json={"task_id": task_id},
            headers={"Authorization": demo_server.api_key},
            timeout=30,
        ).json()
    assert {t.task_id for t in inbox.tasks} == {task_id}
    final = inbox.tasks[-1]
    assert final.is_finished
    assert final.video_url == fetched["video_url"]
    statuses = [t.status for t in inbox.tasks]
    assert "processing" in statuses
    assert statuses.count("finished") == 1
    assert receiver.stats["rejected"] == 0


def test_demo_backend_with_a_wrong_secret_gets_nothing_through(demo_server):
    inbox = Inbox()
    with WebhookReceiver() as receiver:
        receiver.subscribe(inbox)
        forged = submit(demo_server, webhook_url=receiver.url, webhook_secret="x" + receiver.secret)
        genuine = submit(demo_server, webhook_url=receiver.url, webhook_secret=receiver.secret)
        # The forged job started first, so its pushes have been refused by the time the other ends.
        assert finished(inbox, genuine)
    assert {t.task_id for t in inbox.tasks} == {genuine}
    assert receiver.stats["rejected_by_reason"]["unauthorized"] >= 1
    assert forged not in str(inbox.tasks)


def polls(demo) -> int:
    return demo.stats.get("/fetch", 0) + demo.stats.get("/fetch-many", 0)


def track_jobs(demo, tmp_path, count: int, receiver: WebhookReceiver | None):
    """Submit ``count`` jobs, follow them to the end; return (updates per task, polls made)."""
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.store import JobStore
    from runway_widget.tracking.tracker import TaskTracker

    hook = {"webhook_url": receiver.url, "webhook_secret": receiver.secret} if receiver else {}
    updates: dict[str, list[Task]] = {}
    client = ApiframeClient(
        api_key=demo.api_key,
        base_url=demo.base_url,
        store=JobStore(tmp_path / f"jobs-{bool(receiver)}.jsonl"),
        requests_per_second=50,
    )
    tracker = TaskTracker(client, webhooks=receiver, min_interval=0.1, max_interval=6.0)
    before = polls(demo)
    try:
        ids = [client.imagine(prompt=f"a kite over dunes {i}", **hook) for i in range(count)]
        for task_id in ids:
            tracker.track(task_id, on_update=lambda t: updates.setdefault(t.task_id, []).append(t))
        for task_id in ids:
            assert tracker.wait(task_id, timeout=60).is_finished
    finally:
        tracker.stop()
        client.close()
    return {task_id: updates.get(task_id, []) for task_id in ids}, polls(demo) - before


def test_a_tracker_fed_by_webhooks_polls_far_less(tmp_path):
    def job_seconds(payload: dict) -> float:  # finishes spread out, as in a real burst
        return 0.8 + 0.5 * int(payload["prompt"].rsplit(" ", 1)[-1])

    with DemoServer(job_seconds=job_seconds) as demo:
        polled, polling_only = track_jobs(demo, tmp_path, 3, receiver=None)
        with WebhookReceiver() as receiver:
            pushed, with_webhooks = track_jobs(demo, tmp_path, 3, receiver=receiver)
    print(f"poll requests for 3 jobs: {polling_only} polling only, {with_webhooks} with webhooks")
    assert receiver.stats["accepted"] >= 3 * 3  # several updates per job came by push
    for updates in (*polled.values(), *pushed.values()):
        statuses = [t.status for t in updates]
        assert statuses[-1] == "finished"
        assert statuses.count("finished") == 1
        percentages = [t.percentage or 0 for t in updates]
        assert percentages == sorted(percentages)
    for updates in pushed.values():  # pushes report every 10 % step
        assert sum(t.status == "processing" for t in updates) >= 3
    assert with_webhooks * 2 <= polling_only


def test_a_hundred_idle_connections_cost_few_threads_and_updates_still_arrive():
    inbox = Inbox()
    with WebhookReceiver(SECRET, max_connections=16) as receiver:
        receiver.subscribe(inbox)
        before = threading.active_count()
        with idle_connections(urlsplit(receiver.local_url).port, 100) as idle:
            assert peak_thread_growth(before, idle, kept=16) <= 2 * 16  # one per connection
            assert post(receiver, UPDATES[0]).status_code == 200
            assert [task.status for task in inbox.tasks] == ["staged"]


def test_malformed_framing_is_counted_and_answered_in_the_receivers_format(receiver):
    reply = raw_exchange(
        receiver,
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nx-webhook-secret: {SECRET}\r\n"
        "Content-Length: \u00b2\r\n\r\n{}".encode(),
    )
    assert status_of(reply) == 400
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {
        "ok": False,
        "error": "invalid Content-Length",
    }
    assert receiver.stats["rejected_by_reason"] == {"bad_length": 1}
