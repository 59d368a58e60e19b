"""A small scriptable APIFRAME server for tests: real HTTP on 127.0.0.1, a free port.

By default it behaves like the API (submit, fetch, fetch-many, account, upload, files).
A test scripts the next replies of a route to inject what the real service sometimes does:
error statuses, ``Retry-After``, slow answers, malformed bodies, dropped connections::

    with ApiServer() as api:
        api.script("/fetch", Reply(503, headers={"Retry-After": "1"}), Reply(500))
        ...
        assert api.count("/fetch") == 3

Every request is recorded (`Seen`: method, path, headers, body, arrival time).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from runway_widget.models import GenerationRequest

TEST_API_KEY = "sk-test-Zq8v-do-not-leak-7f3a"


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

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


class ApiServer:
    """The fake service; ``tasks``, ``files`` and ``account_info`` are plain, editable state.

    ``tasks[task_id]`` is a task dict, or a list of them: each read of the task moves one
    step along the list and stays on the last.
    """

    def __init__(self, api_key: str | None = TEST_API_KEY) -> None:
        self.api_key = api_key
        self.tasks: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self.account_info: dict[str, Any] = {
            "email": "someone@example.com",
            "credits": 420,
            "total_images": 7,
            "plan": "basic",
        }
        self.seen: list[Seen] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.api = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ApiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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
        self.tasks[task_id] = steps if len(steps) > 1 else steps[0]

    # -- dispatch ----------------------------------------------------------------------------

    def _receive(self, seen: Seen) -> Reply:
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

    def _state(self, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            value = self.tasks.get(task_id)
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
        self.add_task(task_id, {"status": "staged", "percentage": "0"})
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
        if b'name="image"' not in seen.body:
            return error(400, "image is required")
        return Reply(200, json={"imageURL": f"{self.base_url}/uploads/{next(self._ids)}.png"})


_ROUTES: dict[tuple[str, str], Callable[[ApiServer, Seen], Reply]] = {
    ("POST", "/runway-imagine"): ApiServer._imagine,
    ("POST", "/fetch"): ApiServer._fetch,
    ("POST", "/fetch-many"): ApiServer._fetch_many,
    ("GET", "/account"): ApiServer._account,
    ("POST", "/upload"): ApiServer._upload,
}


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        """Quiet: tests read `ApiServer.seen` instead."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(
            method=self.command,
            path=urlsplit(self.path).path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        reply = self.server.api._receive(seen)  # type: ignore[attr-defined]
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            self.close_connection = True
            return
        data, content_type = reply.payload(seen)
        try:
            self.send_response(reply.status)
            headers = {"Content-Type": content_type, **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if reply.cut_after is not None:
                self.wfile.write(data[: reply.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
