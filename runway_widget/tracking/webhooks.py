"""Receive the service's pushed task updates over HTTP, verified by a shared secret.

A job submitted with ``webhook_url=receiver.url`` and ``webhook_secret=receiver.secret``
gets its status changes POSTed here. Each authentic update is parsed into a `Task` and
handed to every subscriber (the tracker), so views update without waiting for a poll.

The endpoint is deliberately small and defensive, since anyone who can reach the port
can send it anything: the secret is checked in constant time before the body is read,
bodies have a size cap, nothing malformed gets past the parser, and no request, however
broken, can stop the server or leak the secret into a reply or a log line.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from .._secrets import key_problem, mask_secret, normalize_secret
from .._server.service import (
    DEFAULT_MAX_CONNECTIONS,
    BackgroundHTTPServer,
    BoundedRequestHandler,
)
from ..errors import ApiframeError
from ..models import Task, is_http_url

__all__ = ["WebhookReceiver"]

logger = logging.getLogger("runway_widget.tracking.webhooks")

SECRET_HEADER = "x-webhook-secret"
DEFAULT_PATH = "/webhook"
_REMEMBERED_TASKS = 1024  # last update per task, to drop resent duplicates cheaply


class _Rejected(Exception):
    """Ends one request with an error reply; ``reason`` is the key counted in stats."""

    def __init__(self, status: HTTPStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class _Handler(BoundedRequestHandler):
    """One connection: HTTP/1.0, so one request each and no idle keep-alive threads."""

    server_version = "runway-widget-webhooks"
    sys_version = ""
    timeout = 10.0  # a client that stalls mid-request cannot hold a thread for long

    def do_POST(self) -> None:
        receiver = self.server.owner
        body_pending = True  # until the length is accepted, the body stays unread
        try:
            receiver._check_secret(self.headers.get_all(SECRET_HEADER) or [])
            length = self._content_length(receiver.max_body)
            body_pending = False
            body = self.read_body(length)
            if len(body) != length:
                raise _Rejected(HTTPStatus.BAD_REQUEST, "incomplete", "the body ended early")
            receiver._deliver(_parse_task(body))
        except _Rejected as rejected:
            receiver._count(rejected.reason)
            self._reply(rejected.status, {"ok": False, "error": rejected.message})
            if body_pending:
                self.drain_before_close()
            return
        except Exception:
            logger.exception("webhook request could not be handled")
            receiver._count("error")
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": "internal error"})
            return
        self._reply(HTTPStatus.OK, {"ok": True})

    def _not_allowed(self) -> None:
        self.server.owner._count("method_not_allowed")
        self._reply(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"ok": False, "error": "only POST is accepted"},
            extra_headers={"Allow": "POST"},
        )

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def send_error_reply(self, status: HTTPStatus, message: str) -> None:
        reason = "length_required" if status == HTTPStatus.LENGTH_REQUIRED else "bad_length"
        self.server.owner._count(reason)
        self._reply(status, {"ok": False, "error": message})

    def _content_length(self, max_body: int) -> int:
        length = self.body_length
        if length is None:
            raise _Rejected(HTTPStatus.LENGTH_REQUIRED, "length_required", "Content-Length needed")
        if length > max_body:
            raise _Rejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too_large",
                f"body over the {max_body}-byte limit",
            )
        return length

    def _reply(
        self,
        status: HTTPStatus,
        payload: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            logger.debug("webhook sender went away before the reply")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0] if isinstance(self.path, str) else "?"
        logger.debug("webhook %s %s -> %s", self.command, path[:200], code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("webhook server: " + format, *args)


def _parse_task(body: bytes) -> Task:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _Rejected(HTTPStatus.BAD_REQUEST, "bad_json", "the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise _Rejected(HTTPStatus.BAD_REQUEST, "bad_shape", "the body is not a task update")
    try:
        return Task.from_json(data)
    except ApiframeError:
        raise _Rejected(
            HTTPStatus.BAD_REQUEST, "bad_shape", "the body is not a task update"
        ) from None


class WebhookReceiver:
    """An HTTP endpoint for a job's pushed updates; subscribers get each one as a `Task`.

    ``secret`` is what jobs send back as ``x-webhook-secret`` (a random one if not given).
    ``public_url`` is the address the service should post to when the kernel sits behind
    a proxy or tunnel; it must forward to this receiver. The server binds on first need:
    `start()`, the context manager, `subscribe()`, or reading a URL (a URL handed out must
    answer). Updates are delivered one at a time, in arrival order; an update identical to
    the previous one for its task is acknowledged but not delivered again.
    ``max_connections``: live connections it serves at once (idle ones make room first).
    """

    def __init__(
        self,
        secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        max_body: int = 1_000_000,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        secret = _usable_secret(secret)
        if public_url is not None and not is_http_url(public_url):
            raise ValueError("public_url must be an http(s) URL")
        if max_body < 1:
            raise ValueError("max_body must be at least 1 byte")
        self._secret = secret
        self._secret_bytes = secret.encode("ascii")
        self.host = host
        self.port = port
        self.public_url = public_url
        self.max_body = max_body
        self.max_connections = max_connections
        self._lock = threading.RLock()
        self._deliver_lock = threading.Lock()
        self._server: BackgroundHTTPServer | None = None
        self._subscribers: list[Callable[[Task], object]] = []
        self._last: OrderedDict[str, Task] = OrderedDict()
        self._counts: Counter[str] = Counter()

    @property
    def secret(self) -> str:
        """The shared secret to submit jobs with; never shown in repr or logs."""
        return self._secret

    @property
    def local_url(self) -> str:
        """The bound address, e.g. ``http://127.0.0.1:PORT/webhook`` (starts the server)."""
        return _url_for(self._serving())

    @property
    def url(self) -> str:
        """Where jobs should post: ``public_url`` if set, else `local_url`."""
        local = self.local_url
        return self.public_url or local

    @property
    def stats(self) -> dict[str, Any]:
        """Counts so far: ``accepted``, ``duplicates``, ``rejected`` and ``rejected_by_reason``."""
        with self._lock:
            counts = dict(self._counts)
        accepted = counts.pop("accepted", 0)
        duplicates = counts.pop("duplicate", 0)
        return {
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": sum(counts.values()),
            "rejected_by_reason": counts,
        }

    def start(self) -> WebhookReceiver:
        """Bind and serve in a background thread; calling it again does nothing."""
        self._serving()
        return self

    def _serving(self) -> BackgroundHTTPServer:
        with self._lock:
            if self._server is None:
                self._server = BackgroundHTTPServer(
                    (self.host, self.port),
                    _Handler,
                    owner=self,
                    name="runway-widget-webhooks",
                    max_connections=self.max_connections,
                ).start()
                logger.debug("webhook receiver listening on %s", _url_for(self._server))
            return self._server

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cut open connections and wait for their threads; start() works again."""
        with self._lock:
            server, self._server = self._server, None
        if server is None:
            return
        server.stop(timeout)
        logger.debug("webhook receiver stopped")

    def subscribe(self, callback: Callable[[Task], object]) -> Callable[[], None]:
        """Call ``callback(task)`` for each accepted update; returns a function that unsubscribes.

        Callbacks run on the request's thread, one update at a time; an exception in one is
        logged and does not affect the others or the reply to the sender.
        """
        with self._lock:
            self._subscribers.append(callback)
        self.start()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        with self._lock:
            server = self._server
        where = self.public_url or (_url_for(server) if server else None)
        state = "running" if server else "stopped"
        return f"WebhookReceiver(url={where!r}, secret={mask_secret(self._secret)!r}, {state})"

    def _check_secret(self, given: list[str]) -> None:
        # One header, compared as bytes: http.server decodes header bytes as latin-1.
        ok = len(given) == 1 and hmac.compare_digest(
            given[0].strip().encode("latin-1", "replace"), self._secret_bytes
        )
        if not ok:
            raise _Rejected(
                HTTPStatus.UNAUTHORIZED, "unauthorized", f"missing or wrong {SECRET_HEADER}"
            )

    def _count(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def _deliver(self, task: Task) -> None:
        with self._deliver_lock:
            previous = self._last.get(task.task_id)
            if task.same_progress(previous):
                self._count("duplicate")
                return
            self._last[task.task_id] = task
            self._last.move_to_end(task.task_id)
            while len(self._last) > _REMEMBERED_TASKS:
                self._last.popitem(last=False)
            self._count("accepted")
            with self._lock:
                subscribers = list(self._subscribers)
            logger.debug("webhook update for %s: %s %s", task.task_id, task.status, task.percentage)
            for callback in subscribers:
                try:
                    callback(task)
                except Exception:
                    logger.exception("webhook subscriber %r failed on %s", callback, task.task_id)


def _usable_secret(secret: object) -> str:
    """A given secret without its surrounding whitespace (read from a file, it ends in a
    newline), or a random one; `ValueError` (never quoting it) if it cannot be a header."""
    if secret is None:
        return secrets.token_urlsafe(24)
    if not isinstance(secret, str):
        raise ValueError("the webhook secret must be a string")
    usable = normalize_secret(secret)
    if usable is None:
        raise ValueError("the webhook secret is empty")
    problem = key_problem(usable, "the webhook secret")
    if problem is not None:
        raise ValueError(problem + " (it travels in an HTTP header)")
    return usable


def _url_for(server: BackgroundHTTPServer) -> str:
    host, port = str(server.server_address[0]), server.server_address[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{DEFAULT_PATH}"
