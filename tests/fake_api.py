"""The tests' one fake APIFRAME service, in memory or over real HTTP.

By default it behaves like the API (submit, fetch, fetch-many, account, upload, files).
A test scripts the next replies of a route to inject what the real service sometimes does:
error statuses, ``Retry-After``, slow answers, malformed bodies, dropped connections::

    api = FakeApi(clock=clock)                       # in memory: api.transport()
    api.script("/fetch", Reply(503, headers={"Retry-After": "1"}), Reply(500))
    client = ApiframeClient(api_key=TEST_API_KEY, base_url=api.base_url,
                            transport=api.transport(), clock=clock, sleep=clock.sleep)
    ...
    assert api.count("/fetch") == 3

In memory, a slow answer moves the fake clock (past the read timeout: `ReadTimeout`), a
dropped one raises `ConnectionDropped`; `api_server.ApiServer` serves the same fake over a
socket, where they really happen. Every request is recorded (`Seen`).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runway_widget._http.transport import (
    ConnectionDropped,
    MockTransport,
    ReadTimeout,
    Request,
    Response,
)
from runway_widget.models import GenerationRequest

TEST_API_KEY = "sk-test-Zq8v-do-not-leak-7f3a"
IN_MEMORY_URL = "http://127.0.0.1:1"  # loopback (so "own backend"), never dialled


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # the server's clock on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One scripted answer. ``json``/``body`` may be callables of the `Seen` request."""

    status: int = 200
    json: Any = None
    body: bytes | str | Callable[[Seen], bytes | str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without any answer
    cut_after: int | None = None  # announce the whole length, send this many bytes, close

    def payload(self, seen: Seen) -> tuple[bytes, str]:
        if self.body is not None:
            body = self.body(seen) if callable(self.body) else self.body
            data = body.encode() if isinstance(body, str) else body
            return data, "text/plain; charset=utf-8"
        value = self.json(seen) if callable(self.json) else self.json
        return json.dumps(value).encode(), "application/json"


def error(status: int, msg: str, **headers: str) -> Reply:
    return Reply(status, json={"errors": [{"msg": msg}]}, headers=dict(headers))


class FakeApi:
    """The fake service; ``tasks``, ``files`` and ``account_info`` are plain, editable state.

    ``tasks[task_id]`` is a task dict, or a list of them: each read of the task moves one
    step along the list and stays on the last; or a function of the clock (`add_job`).
    """

    def __init__(
        self,
        api_key: str | None = TEST_API_KEY,
        *,
        clock: Callable[[], float] = time.monotonic,
        base_url: str = IN_MEMORY_URL,
    ) -> None:
        self.api_key = api_key
        self.clock = clock
        self._url = base_url
        self.tasks: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self.account_info: dict[str, Any] = {
            "email": "someone@example.com",
            "credits": 420,
            "total_images": 7,
            "plan": "basic",
        }
        self.seen: list[Seen] = []
        self.hooks: dict[str, tuple[str, str | None]] = {}  # task_id: (webhook_url, secret)
        self.job_seconds: float | None = None  # see `run_jobs`
        self.video = b""
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self._url

    # -- test controls -----------------------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies``, then behave normally again."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.requests(path))

    def add_task(self, task_id: str, *states: dict[str, Any]) -> None:
        """Register a task; each state is merged into ``{"task_id", "task_type"}``."""
        base = {"task_id": task_id, "task_type": "runway"}
        steps = [{**base, **state} for state in states] or [{**base, "status": "staged"}]
        with self._lock:
            self.tasks[task_id] = steps if len(steps) > 1 else steps[0]

    def run_jobs(self, seconds: float, video: bytes) -> None:
        """Make every submission a job of ``seconds`` (see `add_job`) ending with ``video``,
        as the demo backend does: a prompt saying "forbidden" fails with a message."""
        self.job_seconds = seconds
        self.video = video

    def add_job(self, task_id: str, seconds: float, *, end: dict[str, Any] | None = None) -> None:
        """A task that runs for ``seconds`` of this server's clock, its percentage rising
        linearly (as a string, like the real service), then ends as ``end`` (finished)."""
        started = self.clock()
        final = {"task_id": task_id, "task_type": "runway", "status": "finished",
                 "percentage": 100, "video_url": f"https://cdn.example/{task_id}.mp4",
                 **(end or {})}

        def state(now: float) -> dict[str, Any]:
            done = (now - started) / seconds
            if done >= 1:
                return final
            return {"task_id": task_id, "task_type": "runway", "status": "processing",
                    "percentage": str(int(100 * done))}

        with self._lock:
            self.tasks[task_id] = state

    def finished(self, task_id: str, video: bytes, **extra: Any) -> dict[str, Any]:
        """A finished state whose clip ``video`` this server serves."""
        path = f"/videos/{task_id}.mp4"
        self.files[path] = video
        return {"status": "finished", "percentage": 100, "video_url": self.base_url + path,
                **extra}

    def push(self, task_id: str) -> int:
        """POST the task's current state to the webhook its submission named, with its
        secret, as the service does; returns the receiver's status."""
        import requests

        url, secret = self.hooks[task_id]
        state = self._state(task_id)
        headers = {"x-webhook-secret": secret} if secret else {}
        return requests.post(url, json=state, headers=headers, timeout=10).status_code

    # -- serving -------------------------------------------------------------------------------

    def transport(self) -> MockTransport:
        """This fake as an in-memory transport."""
        return MockTransport(self.handle)

    def handle(self, request: Request) -> Response:
        """Answer ``request`` in memory: slow answers move the clock, drops raise."""
        seen = Seen(request.method, request.path,
                    {k.lower(): v for k, v in request.headers.items()}, request.content,
                    self.clock())
        reply = self.receive(seen)
        if reply.delay:
            if reply.delay >= request.timeout:
                _sleep(self.clock, request.timeout)
                raise ReadTimeout(f"no answer within {request.timeout:g}s")
            _sleep(self.clock, reply.delay)
        if reply.drop:
            raise ConnectionDropped("the connection was dropped (closed without an answer)")
        data, content_type = reply.payload(seen)
        headers = {"Content-Type": content_type, **reply.headers, "Content-Length": str(len(data))}
        if reply.cut_after is not None:
            return Response(reply.status, headers, _cut(data, reply.cut_after))
        return Response(reply.status, headers, data)

    def receive(self, seen: Seen) -> Reply:
        """Record ``seen`` and decide the reply (the scripted one first)."""
        with self._lock:
            self.seen.append(seen)
            queue = self._scripts.get(seen.path)
            if queue:
                return queue.popleft()
        if seen.method == "GET" and (seen.method, seen.path) not in _ROUTES:  # files: public
            data = self.files.get(seen.path)
            if data is None:
                return error(404, "Not found")
            return Reply(200, body=data, headers={"Content-Type": "video/mp4"})
        if self.api_key is not None and seen.headers.get("authorization") != self.api_key:
            return error(401, "Invalid API key")
        route = _ROUTES.get((seen.method, seen.path))
        if route is not None:
            return route(self, seen)
        return error(404, "Not found")

    # -- the routes ----------------------------------------------------------------------------

    def _state(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            value = self.tasks.get(task_id)
            if callable(value):
                return value(self.clock())
            if isinstance(value, list):
                return value.pop(0) if len(value) > 1 else value[0]
            return value

    def _imagine(self, seen: Seen) -> Reply:
        body = _json_or_none(seen.body)
        if not isinstance(body, dict):
            return error(400, "Body must be a JSON object")
        problems = GenerationRequest.from_payload(body).problems()
        if problems:
            return Reply(400, json={"errors": [{"msg": p.message} for p in problems]})
        task_id = f"task-{next(self._ids):04d}"
        if body.get("webhook_url"):
            self.hooks[task_id] = (body["webhook_url"], body.get("webhook_secret"))
        if self.job_seconds is None:
            self.add_task(task_id, {"status": "staged", "percentage": "0"})
        elif "forbidden" in str(body.get("prompt")):
            self.add_job(task_id, self.job_seconds * 0.4, end={
                "status": "failed", "percentage": "40", "video_url": None,
                "message": "The prompt was blocked by content moderation."})
        else:
            self.add_job(task_id, self.job_seconds, end=self.finished(task_id, self.video))
        return Reply(200, json={"task_id": task_id})

    def _fetch(self, seen: Seen) -> Reply:
        body = _json_or_none(seen.body)
        task_id = body.get("task_id") if isinstance(body, dict) else None
        state = self._state(task_id) if isinstance(task_id, str) else None
        return Reply(200, json=state) if state is not None else error(404, "Task not found")

    def _fetch_many(self, seen: Seen) -> Reply:
        body = _json_or_none(seen.body)
        ids = body.get("task_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not 2 <= len(ids) <= 20:
            return error(400, "task_ids must hold 2 to 20 ids")
        states = [self._state(task_id) for task_id in ids]
        return Reply(200, json={"tasks": [s for s in states if s is not None]})

    def _account(self, seen: Seen) -> Reply:
        return Reply(200, json=self.account_info)

    def _upload(self, seen: Seen) -> Reply:
        head = f"Content-Type: {seen.headers.get('content-type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + seen.body)
        images = [part.get_payload(decode=True) for part in message.iter_parts()
                  if part.get_param("name", header="content-disposition") == "image"] \
            if message.is_multipart() else []
        if not images:
            return error(400, "image is required")
        path = f"/uploads/{next(self._ids)}.png"
        self.files[path] = images[0]
        return Reply(200, json={"imageURL": self.base_url + path})


_ROUTES: dict[tuple[str, str], Callable[[FakeApi, Seen], Reply]] = {
    ("POST", "/runway-imagine"): FakeApi._imagine,
    ("POST", "/fetch"): FakeApi._fetch,
    ("POST", "/fetch-many"): FakeApi._fetch_many,
    ("GET", "/account"): FakeApi._account,
    ("POST", "/upload"): FakeApi._upload,
}


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _sleep(clock: Callable[[], float], seconds: float) -> None:
    """Let ``seconds`` pass on ``clock``: a fake one moves, the real one is slept on."""
    sleep = getattr(clock, "sleep", time.sleep)
    sleep(seconds)


def _cut(data: bytes, after: int) -> Iterator[bytes]:
    yield data[:after]
    raise ConnectionDropped(f"the connection was dropped (after {after} bytes)")
