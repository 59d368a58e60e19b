"""The demo backend: the APIFRAME Runway HTTP API on 127.0.0.1, rendering real clips.

Built on the standard library's ``ThreadingHTTPServer``. Routes, JSON shapes, validation and
the error format follow the real service (api.apiframe.pro). Faults can be switched on at run
time through ``server.faults`` to exercise a client's retries.
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import io
import json
import logging
import math
import os
import random
import re
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from .._server.service import (
    DEFAULT_MAX_CONNECTIONS,
    BackgroundHTTPServer,
    BoundedRequestHandler,
    presented_key,
)
from ..models import FETCH_MANY_LIMIT, UPLOAD_LIMIT, GenerationRequest
from .inputs import Fetch, InputLoader
from .render_pool import RenderPool
from .renderer import RenderSpec
from .samples import sample_path
from .timeline import DemoTask
from .webhook_sender import WebhookSender

logger = logging.getLogger("runway_widget.demo")

DEFAULT_JOB_SECONDS = 6.0
JOB_SECONDS_ENV = "RUNWAY_WIDGET_DEMO_SECONDS"
CREDITS_PER_SECOND = 1  # a 5 s clip costs 5 credits, a 10 s clip 10
MAX_JSON_BYTES = 1024 * 1024
DEMO_API_KEY = "runway-widget-demo-key"  # the fixed key of the embedded demo backend
MODERATED_WORD = re.compile(r"\bforbidden\b", re.IGNORECASE)
UPLOAD_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
API_ROUTES = {
    "/runway-imagine": "POST",
    "/fetch": "POST",
    "/fetch-many": "POST",
    "/upload": "POST",
    "/account": "GET",
}
_VIDEO_PATH = re.compile(r"^/videos/([A-Za-z0-9-]{1,64})\.mp4$")
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{32}\.(png|jpg|gif|webp)$")
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")

JobSeconds = float | Callable[[dict[str, Any]], float]


@dataclass
class DemoFaults:
    """Faults the demo injects into API calls (media downloads are never faulted).

    Change the fields at any time; each request reads them when it arrives.
    """

    error_rate: float = 0.0  # probability of a random 500 / 502 / 503 (before any work)
    rate_limit_burst: int = 0  # the next N API requests get 429 with Retry-After
    retry_after: float = 1.0  # seconds, sent in Retry-After on 429 and 503
    slow_seconds: float = 0.0  # delay before every API reply (after the work is done)
    drop_rate: float = 0.0  # probability of closing the connection without a reply (after work)
    fail_rate: float = 0.0  # probability that a submitted task ends "failed"
    malformed_rate: float = 0.0  # probability of a 200 whose body is not JSON (after work)
    # A clip hosted elsewhere: a finished task whose prompt contains ``elsewhere_marker``
    # reports ``elsewhere_video_url`` as its clip instead of this server's copy (a slow or
    # hostile host, for whoever copies the clip). Both must be set.
    elsewhere_marker: str = ""
    elsewhere_video_url: str = ""

    def reset(self) -> None:
        """Switch every fault off."""
        for name, value in DemoFaults().__dict__.items():
            setattr(self, name, value)


class _ApiError(Exception):
    """Ends a request with an error reply in the API's format."""

    def __init__(self, status: int, *messages: str, headers: dict[str, str] | None = None):
        super().__init__(messages[0] if messages else "")
        self.status = status
        self.messages = messages
        self.headers = headers or {}


def job_seconds_from_env() -> float | None:
    """``RUNWAY_WIDGET_DEMO_SECONDS`` as seconds, None when unset; ValueError says what is wrong."""
    raw = os.environ.get(JOB_SECONDS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{JOB_SECONDS_ENV}={raw[:40]!r} is not a number of seconds (0 or more, e.g. 6)"
        )
    return value


def _default_job_seconds() -> float:
    try:
        value = job_seconds_from_env()
    except ValueError as exc:
        logger.warning("ignoring %s", exc)
        value = None
    return DEFAULT_JOB_SECONDS if value is None else value


class _Handler(BoundedRequestHandler):
    """One HTTP connection. Every reply has a Content-Length, so keep-alive works."""

    protocol_version = "HTTP/1.1"
    server_version = "runway-widget-demo"
    timeout = 30  # idle keep-alive connections close after this many seconds
    _body_read = False

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("demo server: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        demo = self.server.owner
        path = urlsplit(self.path).path
        if path in API_ROUTES:
            demo._count(path)
            self._api(method, path)
            return
        media = self._media_path(path)
        demo._count("/" + path.split("/")[1] if media is not None else "other")
        self._drain_body()
        if media is None or method == "POST":
            self._send_json(404, {"errors": [{"msg": "Not found"}]})
        else:
            self._send_file(media, head=method == "HEAD")

    # --- the API -----------------------------------------------------------------------

    def _api(self, method: str, path: str) -> None:
        demo = self.server.owner
        faults = demo.faults
        self._body_read = False
        try:
            if method != API_ROUTES[path]:
                raise _ApiError(405, f"{method} is not allowed on {path}")
            demo._fault_before(faults)
            if not demo._authorized(self.headers.get("Authorization")):
                raise _ApiError(401, "Invalid API key")
            if path == "/upload":
                status, body = 200, demo._upload(self._read_upload())
            elif path == "/account":
                status, body = 200, demo._account()
            else:
                payload = self._read_json()
                handler = {
                    "/runway-imagine": demo._imagine,
                    "/fetch": demo._fetch,
                    "/fetch-many": demo._fetch_many,
                }[path]
                status, body = 200, handler(payload)
            extra: dict[str, str] = {}
        except _ApiError as exc:
            if not self._body_read:
                self._drain_body()
            status = exc.status
            body = {"errors": [{"msg": m} for m in exc.messages]}
            extra = exc.headers
        except Exception:
            logger.exception("demo server: %s %s failed", method, path)
            self.close_connection = True
            status, body, extra = 500, {"errors": [{"msg": "Internal server error"}]}, {}
        if faults.slow_seconds > 0:
            demo._stopping.wait(faults.slow_seconds)
        if demo._chance(faults.drop_rate):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if status == 200 and demo._chance(faults.malformed_rate):
            self._send_bytes(200, b"<html><body>Bad gateway</body></html>", "text/html")
            return
        self._send_json(status, body, extra)

    def _content_length(self, cap: int, too_big: str) -> int:
        length = self.body_length or 0
        if length > cap:
            self._drain_body(length)
            raise _ApiError(400, too_big)
        self._body_read = True  # the caller reads exactly `length` bytes next
        return length

    def _read_exactly(self, length: int) -> bytes:
        body = self.read_body(length)
        if len(body) != length:
            self.close_connection = True
            raise _ApiError(400, "the request body ended before its Content-Length")
        return body

    def _drain_body(self, length: int | None = None) -> None:
        """Read and discard a body we will not use, so the reply reaches the client."""
        self._body_read = True
        self.discard_body(self.body_length or 0 if length is None else length)

    def _read_json(self) -> dict[str, Any]:
        length = self._content_length(MAX_JSON_BYTES, "the request body is too large")
        try:
            payload = json.loads(self._read_exactly(length) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _ApiError(400, "the request body must be a JSON object") from None
        if not isinstance(payload, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        return payload

    def _read_upload(self) -> bytes:
        content_type = self.headers.get("Content-Type", "")
        too_big = "image must be at most 2 MB"
        length = self._content_length(UPLOAD_LIMIT + 64 * 1024, too_big)
        body = self._read_exactly(length)
        if not content_type.lower().startswith("multipart/form-data"):
            raise _ApiError(400, "send the image as multipart/form-data in the field 'image'")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
        )
        for part in message.iter_parts() if message.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == "image":
                data = part.get_payload(decode=True)
                if not isinstance(data, bytes) or not data:
                    break
                if len(data) > UPLOAD_LIMIT:
                    raise _ApiError(400, too_big)
                return data
        raise _ApiError(400, "the multipart field 'image' is required")

    # --- media -------------------------------------------------------------------------

    def _media_path(self, path: str) -> Path | None:
        return self.server.owner._media_file(path)

    def _send_file(self, path: Path, head: bool) -> None:
        size = path.stat().st_size
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        start, end = 0, size - 1
        status = 200
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        wanted = self.headers.get("Range")
        if wanted:
            try:
                parsed = _parse_range(wanted, size)
            except _RangeNotSatisfiable:
                headers["Content-Range"] = f"bytes */{size}"
                self._send_bytes(416, b"", content_type, headers)
                return
            if parsed is not None:
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if head or not length:
            return
        with path.open("rb") as handle:
            handle.seek(start)
            remaining = length
            while remaining > 0:
                chunk = handle.read(min(remaining, 256 * 1024))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)

    # --- replies -----------------------------------------------------------------------

    def send_error_reply(self, status: HTTPStatus, message: str) -> None:
        self._send_json(status, {"errors": [{"msg": message}]})

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(body).encode(), "application/json", headers)

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _RangeNotSatisfiable(Exception):
    """The Range asks for nothing inside the file: 416."""


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for one byte range; None: ignore the header (send it all)."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # multiple or malformed ranges: the whole file is a valid answer
    first, last = (_range_number(group) for group in match.groups())
    if first is None:
        suffix = last or 0
        if suffix == 0 or size == 0:
            raise _RangeNotSatisfiable
        return max(0, size - suffix), size - 1
    start = first
    end = size - 1 if last is None else min(last, size - 1)
    if start >= size or end < start:
        raise _RangeNotSatisfiable
    return start, end


def _range_number(digits: str) -> int | None:
    """A Range bound ("" is None); one too long to parse is past the end of any file."""
    if not digits:
        return None
    return int(digits) if len(digits) <= 18 else 10**18


class DemoServer:
    """A local stand-in for the APIFRAME Runway API that renders real MP4 clips.

    ``job_seconds`` is how long each task runs: a number, or a function of the request body
    (to spread run times); None reads ``RUNWAY_WIDGET_DEMO_SECONDS`` (default 6 s).
    ``fetch`` loads inputs (``image_url``, ``video_url``) that are not on this server; by
    default ``requests`` fetches them from wherever they are. ``concurrency`` is how many
    jobs may run at once (None: any number): past it, a submission is answered as a
    provider answers one past its plan, 429 with ``Retry-After`` (the seconds until a
    running job ends) and ``{"errors": [{"msg": "too many running jobs"}]}``.
    ``max_connections``: live connections it serves at once (a benchmark's whole room).
    Each task's state is a function of ``clock`` (``time.time`` unless given), so a test's
    clock can run a job to its end at once (its clip is still really rendered).
    """

    api_key = DEMO_API_KEY

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        job_seconds: JobSeconds | None = None,
        credits: int = 1000,
        render_workers: int = 2,
        fetch: Fetch | None = None,
        concurrency: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1 (or None: no limit)")
        self.host = host
        self.port = port
        self.job_seconds: JobSeconds = (
            _default_job_seconds() if job_seconds is None else job_seconds
        )
        self.credits = credits
        self.concurrency = concurrency
        self.max_connections = max_connections
        self.clock = clock
        self.faults = DemoFaults()
        self._render_workers = render_workers
        self._fetch_input = fetch
        self._lock = threading.Lock()
        self._random = random.Random()
        self._stats: Counter[str] = Counter()
        self._tasks: dict[str, DemoTask] = {}
        self._running: list[DemoTask] = []  # may hold ended ones until the next submission
        self._peak_running = 0
        self._busy_refusals = 0
        self._jobs_submitted = 0
        self._stopping = threading.Event()
        self._httpd: BackgroundHTTPServer | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._renders: RenderPool | None = None
        self._webhooks: WebhookSender | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "not started"
        return f"<DemoServer {where}>"

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> DemoServer:
        """Bind (a free port when ``port`` is 0) and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        # Bind first: a taken port fails here, before any thread or folder exists.
        httpd = BackgroundHTTPServer(
            (self.host, self.port),
            _Handler,
            owner=self,
            name="runway-widget-demo-server",
            max_connections=self.max_connections,
        )
        self._stopping.clear()
        self._workdir = tempfile.TemporaryDirectory(prefix="runway-widget-demo-")
        root = Path(self._workdir.name)
        for name in ("videos", "uploads", "inputs"):
            (root / name).mkdir()
        self._renders = RenderPool(
            root / "videos",
            InputLoader(self._local_file, root / "inputs", self._fetch_input),
            self._render_workers,
            clock=self.clock,
        )
        self._webhooks = WebhookSender(self._snapshot, self.clock)
        self._httpd = httpd.start()
        self.port = self._httpd.port
        logger.info("demo server listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, end open connections, renders and webhook calls; join every thread."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.stop()
        if self._webhooks is not None:
            self._webhooks.stop()
        if self._renders is not None:
            self._renders.shutdown()
        if self._workdir is not None:
            self._workdir.cleanup()
        logger.info("demo server on port %s stopped", self.port)

    @property
    def is_running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- public helpers ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def sample_url(self, name: str) -> str:
        """URL of a bundled sample: ``lighthouse.png``, ``landscape.jpg`` or ``clip.mp4``."""
        return f"{self.base_url}/samples/{name}"

    def video_url(self, task_id: str) -> str:
        return f"{self.base_url}/videos/{task_id}.mp4"

    def finished_at(self, task_id: str) -> float | None:
        """The time (on the server's clock) the task became finished or failed; None while it
        runs."""
        task = self._tasks.get(task_id)
        ends = task.ends_at() if task is not None else None
        return ends if ends is not None and ends <= self.clock() else None

    @property
    def stats(self) -> dict[str, int]:
        """Requests received per route (e.g. ``/fetch-many``, ``/videos``), faulted ones too."""
        with self._lock:
            return dict(self._stats)

    @property
    def requests_total(self) -> int:
        with self._lock:
            return sum(self._stats.values())

    @property
    def render_count(self) -> int:
        """Clips rendered so far; requests that draw the same clip share one render."""
        return self._renders.started if self._renders is not None else 0

    @property
    def jobs_submitted(self) -> int:
        """Submissions taken (refused ones not counted)."""
        with self._lock:
            return self._jobs_submitted

    @property
    def peak_running(self) -> int:
        """The most jobs that ran at once (submitted, not yet finished or failed)."""
        with self._lock:
            return self._peak_running

    @property
    def busy_refusals(self) -> int:
        """Submissions refused because ``concurrency`` jobs were running."""
        with self._lock:
            return self._busy_refusals

    @property
    def webhook_stats(self) -> dict[str, int]:
        sender = self._webhooks
        return {"delivered": sender.delivered, "failed": sender.failed} if sender else {}

    # --- request handling (called from connection threads) -----------------------------

    def _count(self, route: str) -> None:
        with self._lock:
            self._stats[route] += 1

    def _authorized(self, header: str | None) -> bool:
        """The demo key, sent raw (as APIFRAME documents) or as ``Bearer <key>`` (its SDK)."""
        given = presented_key(header)
        return given is not None and hmac.compare_digest(
            given.encode("utf-8", "replace"), self.api_key.encode()
        )

    def _chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate

    def _fault_before(self, faults: DemoFaults) -> None:
        """Faults that hit before any work: 429 bursts and random 5xx."""
        with self._lock:
            limited = faults.rate_limit_burst > 0
            if limited:
                faults.rate_limit_burst -= 1
        retry = {"Retry-After": f"{faults.retry_after:g}"}
        if limited:
            raise _ApiError(429, "Too many requests", headers=retry)
        if self._chance(faults.error_rate):
            with self._lock:
                status = self._random.choice((500, 502, 503))
            raise _ApiError(
                status,
                "Internal server error (demo fault injection)",
                headers=retry if status == 503 else None,
            )

    def _imagine(self, body: dict[str, Any]) -> dict[str, Any]:
        request = GenerationRequest.from_payload(body)
        problems = request.problems()
        if problems:
            raise _ApiError(400, *(p.message for p in problems))
        payload = request.public_payload()
        cost = CREDITS_PER_SECOND * int(request.duration or 5)
        seconds = self.job_seconds(payload) if callable(self.job_seconds) else self.job_seconds
        task = DemoTask(
            task_id=str(uuid.uuid4()),
            payload=payload,
            submitted_at=self.clock(),
            job_seconds=max(0.0, float(seconds)),
            webhook_url=request.webhook_url,
            webhook_secret=request.webhook_secret,
        )
        if MODERATED_WORD.search(request.prompt):
            task.fail_after = 0.4
            task.fail_message = (
                "The prompt was blocked by content moderation (the demo refuses 'forbidden')."
            )
        elif self._chance(self.faults.fail_rate):
            task.fail_after = 0.2 + 0.6 * self._random.random()
            task.fail_message = "The generation failed (demo fault injection)."
        with self._lock:
            self._make_room(task.submitted_at)
            if self.credits < cost:
                raise _ApiError(
                    402, f"Not enough credits: this job needs {cost}, {self.credits} left"
                )
            self.credits -= cost
            self._jobs_submitted += 1
            self._tasks[task.task_id] = task
            self._running.append(task)
            self._peak_running = max(self._peak_running, len(self._running))
        if task.fail_after is None and self._renders is not None:
            task.render = self._renders.submit(RenderSpec.from_payload(payload))
        if task.webhook_url and self._webhooks is not None:
            self._webhooks.watch(task)
        return {"task_id": task.task_id}

    def _make_room(self, now: float) -> None:
        """Forget jobs that ended; past ``concurrency`` running ones, refuse (lock held)."""
        self._running = [t for t in self._running if (t.ends_at() or math.inf) > now]
        if self.concurrency is None or len(self._running) < self.concurrency:
            return
        self._busy_refusals += 1
        soonest = min((t.ends_at() or t.submitted_at + t.job_seconds) for t in self._running)
        wait = max(1, math.ceil(soonest - now))
        raise _ApiError(429, "too many running jobs", headers={"Retry-After": str(wait)})

    def _snapshot(self, task: DemoTask, now: float) -> dict[str, Any]:
        faults = self.faults
        marker, elsewhere = faults.elsewhere_marker, faults.elsewhere_video_url
        if marker and elsewhere and marker in str(task.payload.get("prompt", "")):
            return task.snapshot(now, elsewhere)
        return task.snapshot(now, self.video_url(task.task_id))

    def _fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        task_id = body.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise _ApiError(400, "task_id is required")
        task = self._tasks.get(task_id)
        if task is None:
            raise _ApiError(404, "Task not found")
        return self._snapshot(task, self.clock())

    def _fetch_many(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("task_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _ApiError(400, "task_ids must be a list of task ids")
        if not 2 <= len(ids) <= FETCH_MANY_LIMIT:
            raise _ApiError(400, f"task_ids must hold between 2 and {FETCH_MANY_LIMIT} ids")
        now = self.clock()
        found = (self._tasks.get(i) for i in ids)
        return {"tasks": [self._snapshot(t, now) for t in found if t is not None]}

    def _account(self) -> dict[str, Any]:
        with self._lock:
            return {
                "email": "demo@runway-widget.local",
                "credits": self.credits,
                "total_images": self._jobs_submitted,
                "plan": "demo",
            }

    def _upload(self, data: bytes) -> dict[str, Any]:
        try:
            with Image.open(io.BytesIO(data)) as image:
                kind = UPLOAD_FORMATS.get(str(image.format))
                image.verify()
        except Exception:
            kind = None
        if kind is None:
            raise _ApiError(400, "image must be a PNG, JPEG, GIF or WebP picture")
        name = f"{uuid.uuid4().hex}.{kind}"
        target = self._root / "uploads" / name
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, target)
        return {"imageURL": f"{self.base_url}/uploads/{name}"}

    # --- files -------------------------------------------------------------------------

    @property
    def _root(self) -> Path:
        assert self._workdir is not None
        return Path(self._workdir.name)

    def _media_file(self, path: str) -> Path | None:
        """The file behind a media route, or None (unknown, or a video not finished yet)."""
        if path.startswith("/samples/"):
            return sample_path(path.removeprefix("/samples/"))
        if path.startswith("/uploads/"):
            name = path.removeprefix("/uploads/")
            target = self._root / "uploads" / name
            return target if _UPLOAD_NAME.match(name) and target.is_file() else None
        match = _VIDEO_PATH.match(path)
        if match:
            task = self._tasks.get(match.group(1))
            if task is not None and task.render is not None and task.is_finished(self.clock()):
                return task.render.path if task.render.path.is_file() else None
        return None

    def _local_file(self, url: str) -> Path | None:
        """For a URL on this very server, the file it names (so renders never call us)."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            return None
        loopback = {"127.0.0.1", "localhost", "::1", self.host.lower()}
        if (parts.hostname or "").lower() not in loopback or port != self.port:
            return None
        if self._workdir is None:
            return None
        return self._media_file(parts.path)
