"""The APIFRAME Runway client: submit, fetch, wait, upload and download.

Retries live in urllib3's `Retry`, mounted on the session's adapters, never in loops here:

- reads (``/fetch``, ``/fetch-many``, ``/account``, downloads) retry 429, 5xx, refused
  connections, timeouts and dropped connections, with full-jitter exponential backoff,
  honouring ``Retry-After``;
- ``/runway-imagine`` costs credits and has no idempotency key, so it is retried only when
  the server certainly did not take it (429, 503, a connection that never opened). A read
  timeout or a dropped connection raises `SubmissionUnknownError` instead.

Every read first takes a token from ``read_budget``, so all callers of one client together
stay under its request rate (``fetch_batch(retry=False)`` leaves that to its caller). The
API key only travels in the ``Authorization`` header of calls to the API itself; everywhere
else it is masked (`mask_secret`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import json
import logging
import mimetypes
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import takewhile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.util.retry import Retry

from . import __version__
from .budget import RequestBudget
from .credentials import resolve as resolve_credentials
from .errors import (
    ApiframeError,
    AuthenticationError,
    NetworkError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    ValidationError,
)
from .models import GenerationRequest, Problem, Task, is_http_url, video_filename

if TYPE_CHECKING:
    from .store import JobStore

__all__ = [
    "DEFAULT_BASE_URL",
    "DEMO_API_KEY",
    "FETCH_MANY_LIMIT",
    "UPLOAD_LIMIT",
    "ApiframeClient",
    "mask_secret",
]

DEFAULT_BASE_URL = "https://api.apiframe.pro"
DEFAULT_POLL_INTERVAL = 3.0
FETCH_MANY_LIMIT = 20
UPLOAD_LIMIT = 2 * 1024 * 1024
UNKNOWN_SUBMISSION_HINT = (
    "the task may or may not exist: check `runway-widget history` before resubmitting"
)

DEMO_API_KEY = "runway-widget-demo-key"  # the fixed key of the embedded demo backend
_READ_RETRY_STATUSES = frozenset([429, *range(500, 600)])
_SUBMIT_RETRY_STATUSES = frozenset([429, 503])
_EXCERPT_CHARS = 160
_DOWNLOAD_CHUNK = 256 * 1024
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
)

logger = logging.getLogger("runway_widget.client")

T = TypeVar("T")


def mask_secret(secret: str | None) -> str:
    """``…`` + the last 4 characters: enough to tell keys apart, never enough to use one."""
    if not secret:
        return "(not set)"
    return "…" + secret[-4:] if len(secret) >= 8 else "…"


class _JitterRetry(Retry):
    """urllib3 `Retry` with full-jitter backoff, and a ceiling on how long Retry-After may hold.

    Full jitter (a uniform draw up to the exponential cap) spreads the retries of many
    clients that failed together. A Retry-After longer than ``backoff_max`` is not slept
    through: the call fails at once with `RateLimitError.retry_after` so the caller decides.
    """

    def get_backoff_time(self) -> float:
        errors = len(list(takewhile(lambda h: h.redirect_location is None, reversed(self.history))))
        if errors == 0:
            return 0.0
        return random.uniform(0.0, min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1)))

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _JitterRetry:
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.backoff_max:
                raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:g}s"))
        return super().increment(method, url, response, error, _pool, _stacktrace)


class ApiframeClient:
    """One session to the APIFRAME Runway API (or the demo backend that speaks it).

    Constructing never touches the network; a missing API key is reported by the first call.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        *,
        store: JobStore | None = None,
        requests_per_second: float = 2.0,
        max_retries: int = 4,
        backoff_factor: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        credentials = resolve_credentials(api_key, base_url)
        self.api_key = credentials.api_key
        self._base_url = (credentials.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.poll_interval = _env_seconds("RUNWAY_WIDGET_POLL_INTERVAL", DEFAULT_POLL_INTERVAL)
        self.read_budget = RequestBudget(requests_per_second, burst=2)
        self._store = store
        self._demo = False

        reads = _JitterRetry(
            total=max_retries,
            allowed_methods=frozenset(["GET", "HEAD", "POST"]),
            status_forcelist=_READ_RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            raise_on_status=False,
        )
        submissions = _JitterRetry(
            total=max_retries,
            connect=max_retries,
            read=0,
            other=0,
            status=max_retries,
            allowed_methods=frozenset(["POST"]),
            status_forcelist=_SUBMIT_RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"runway_widget/{__version__}"
        read_adapter = HTTPAdapter(max_retries=reads)
        self.session.mount("http://", read_adapter)
        self.session.mount("https://", read_adapter)
        self.session.mount(self.base_url + "/runway-imagine", HTTPAdapter(max_retries=submissions))
        # For callers that schedule their own backoff (the tracker): exactly one attempt.
        self._single_attempt = HTTPAdapter(max_retries=Retry(total=0, raise_on_status=False))

    # -- construction and identity -------------------------------------------------------------

    @classmethod
    def demo(cls, **kwargs: Any) -> ApiframeClient:
        """A client on this process's shared demo backend (needs ``runway_widget[demo]``)."""
        from .demo import shared_demo_server

        server = shared_demo_server()
        client = cls(api_key=server.api_key, base_url=server.base_url, **kwargs)
        client._demo = True
        return client

    @property
    def base_url(self) -> str:
        """Fixed for the client's life: the submission adapter is mounted under it."""
        return self._base_url

    @property
    def is_demo(self) -> bool:
        """True on the demo backend: nothing is paid, videos are rendered locally."""
        return self._demo or self.api_key == DEMO_API_KEY

    @property
    def store(self) -> JobStore:
        """The job history every submission is journalled to (default location unless given)."""
        if self._store is None:
            from .store import JobStore

            self._store = JobStore()
        return self._store

    def __repr__(self) -> str:
        demo = ", demo" if self.is_demo else ""
        return (
            f"ApiframeClient(base_url={self.base_url!r}, api_key={mask_secret(self.api_key)!r}"
            f"{demo})"
        )

    def close(self) -> None:
        self.session.close()
        self._single_attempt.close()

    def __enter__(self) -> ApiframeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the API -------------------------------------------------------------------------------

    def imagine(self, request: GenerationRequest | None = None, **fields: Any) -> str:
        """Submit a generation and return its task_id, journalled before it is returned.

        Validates first (nothing is sent for a bad request). Raises `SubmissionUnknownError`
        when the request went out but no answer came back.
        """
        if request is None:
            fields.setdefault("prompt", None)
            request = GenerationRequest(**fields)
        elif fields:
            request = dataclasses.replace(request, **fields)
        request.validate()
        task_id = self._call(
            "POST",
            "/runway-imagine",
            parse=_parse_task_id,
            json=request.to_payload(),
            submission=True,
        )
        self.store.record_submission(task_id, request, backend=self.base_url, demo=self.is_demo)
        logger.info("submitted task %s to %s", task_id, self.base_url)
        return task_id

    def fetch(self, task_id: str) -> Task:
        """The task's current state; `TaskNotFoundError` if the server does not know it."""
        return self._fetch_one(task_id, retry=True)

    def fetch_batch(self, ids: list[str], *, retry: bool = True) -> dict[str, Task]:
        """One logical call for at most 20 ids: only the tasks the server returned.

        One id goes to ``/fetch`` (unknown -> ``{}``), more to ``/fetch-many``.
        ``retry=False`` is for a scheduler that paces itself (the tracker): exactly one HTTP
        attempt, and no token taken here, since the scheduler takes it from ``read_budget``
        (with ``reserve()``, which never blocks its thread) before calling.
        """
        unique = list(dict.fromkeys(ids))
        if len(unique) > FETCH_MANY_LIMIT:
            raise ValueError(f"fetch_batch takes at most {FETCH_MANY_LIMIT} ids, not {len(unique)}")
        if not unique:
            return {}
        if len(unique) == 1:
            try:
                return {unique[0]: self._fetch_one(unique[0], retry=retry)}
            except TaskNotFoundError:
                return {}
        tasks = self._call(
            "POST",
            "/fetch-many",
            parse=_parse_tasks,
            json={"task_ids": unique},
            take_token=retry,
            retry=retry,
        )
        wanted = set(unique)
        return {task.task_id: task for task in tasks if task.task_id in wanted}

    def fetch_many(self, ids: Iterable[str]) -> list[Task]:
        """Any number of tasks, in the order asked, in as few requests as the API allows."""
        ids = list(ids)
        found: dict[str, Task] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), FETCH_MANY_LIMIT):
            batch = {} if len(chunk) == 1 else self.fetch_batch(chunk)
            found.update(batch)
            for task_id in chunk:
                if task_id not in found:
                    found[task_id] = self.fetch(task_id)
        return [found[task_id] for task_id in ids]

    def account(self) -> dict[str, Any]:
        """``{"email", "credits", "total_images", "plan"}`` of the key's account."""
        return self._call("GET", "/account", parse=_parse_object, take_token=True)

    def upload_image(self, image: str | os.PathLike[str] | bytes) -> str:
        """Upload a first/last frame (a path or the bytes, at most 2 MB); returns its URL."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
            name = "image"
        else:
            path = Path(image).expanduser()
            if not path.is_file():
                raise ValidationError([Problem("image", f"no such image file: {path}")])
            if path.stat().st_size > UPLOAD_LIMIT:
                raise ValidationError([_too_big(path.stat().st_size)])
            data = path.read_bytes()
            name = path.name
        if not data:
            raise ValidationError([Problem("image", "the image is empty")])
        if len(data) > UPLOAD_LIMIT:
            raise ValidationError([_too_big(len(data))])
        content_type, suffix = sniff_image(data)
        if name == "image":
            name += suffix
        content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return self._call(
            "POST",
            "/upload",
            parse=_parse_image_url,
            files={"image": (name, data, content_type)},
        )

    def wait(
        self,
        task_id: str,
        timeout: float | None = 600,
        on_progress: Callable[[Task], Any] | None = None,
        poll_interval: float | None = None,
    ) -> Task:
        """Poll until the task finishes; ``on_progress(task)`` on every visible change.

        Returns the finished task; raises `TaskFailedError` or `TaskTimeoutError` (both
        carrying the last task seen). The task itself goes on after a timeout.
        """
        interval = self.poll_interval if poll_interval is None else poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Task | None = None
        while True:
            task = self.fetch(task_id)
            changed = not task.same_progress(last)
            last = task
            if changed:
                self.store.record_task(task, backend=self.base_url)
                if on_progress is not None:
                    on_progress(task)
            if task.is_finished:
                return task
            if task.is_failed:
                raise TaskFailedError(task)
            pause = interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TaskTimeoutError(task, task_id, timeout)
                pause = min(pause, remaining)
            time.sleep(max(0.0, pause))

    def download(self, task_or_url: Task | str, path: str | os.PathLike[str]) -> Path:
        """Save a video to ``path`` (a file, or a folder to put it in); returns the file.

        Streamed to a temporary file next to the destination and renamed into place, so
        the destination is either the whole video or untouched, never a half-written MP4.
        """
        task_id: str | None = None
        if isinstance(task_or_url, Task):
            task_id = task_or_url.task_id
            url = task_or_url.video_url
            if not url:
                raise ApiframeError(
                    f"task {task_id} has no video yet (status {task_or_url.status!r})"
                )
        else:
            url = str(task_or_url)
        if not is_http_url(url):
            raise ApiframeError(f"not an http(s) video URL: {url[:100]!r}")
        destination = Path(path).expanduser()
        if destination.is_dir():
            destination = destination / video_filename(None, task_id)
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
        )
        try:
            with os.fdopen(handle, "wb") as out:
                self._stream(url, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets, not videos
            os.replace(temporary, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        if task_id is not None:
            self.store.record_download(task_id, destination)
        logger.info("saved %s to %s", url, destination)
        return destination

    # -- transport -----------------------------------------------------------------------------

    def _fetch_one(self, task_id: str, *, retry: bool) -> Task:
        return self._call(
            "POST",
            "/fetch",
            parse=Task.from_json,
            json={"task_id": task_id},
            take_token=retry,
            retry=retry,
            task_id=task_id,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], T],
        take_token: bool = False,
        retry: bool = True,
        submission: bool = False,
        task_id: str | None = None,
        **body: Any,
    ) -> T:
        """One API call: key check, budget, request, error mapping, then ``parse`` the JSON."""
        if not self.api_key:
            raise AuthenticationError(
                "no API key: set APIFRAME_API_KEY or pass api_key=… "
                "(or try the demo backend: ApiframeClient.demo())"
            )
        if take_token:
            self.read_budget.acquire()
        url = self.base_url + path
        headers = {"Authorization": self.api_key}
        try:
            response = self._send(method, url, retry=retry, headers=headers, **body)
        except requests.RequestException as exc:
            raise self._transport_error(exc, path, submission=submission) from exc
        logger.debug("%s %s -> HTTP %s", method, path, response.status_code)
        if not 200 <= response.status_code < 300:
            raise self._status_error(response, path, task_id=task_id, submission=submission)
        try:
            return parse(response.json())
        except (ValueError, TypeError, KeyError, ApiframeError):
            raise self._malformed(response, path, submission=submission) from None

    def _send(self, method: str, url: str, *, retry: bool, **kwargs: Any) -> requests.Response:
        if retry:
            return self.session.request(method, url, timeout=self.timeout, **kwargs)
        prepared = self.session.prepare_request(requests.Request(method, url, **kwargs))
        settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
        response = self._single_attempt.send(prepared, timeout=self.timeout, **settings)
        _ = response.content  # read the body here, where transport errors are mapped
        return response

    def _stream(self, url: str, out: IO[bytes]) -> None:
        try:
            with self.session.get(url, stream=True, timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise ApiframeError(
                        f"could not download {url}: HTTP {response.status_code}",
                        status_code=response.status_code,
                    )
                expected = response.headers.get("Content-Length", "")
                written = 0
                for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                if (
                    expected.isdigit()
                    and "Content-Encoding" not in response.headers
                    and (written != int(expected))
                ):
                    raise NetworkError(f"download of {url} cut short at {written} of {expected} B")
        except requests.RequestException as exc:
            raise NetworkError(f"download of {url} failed: {self._describe(exc)}") from exc

    # -- error mapping -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Remove the key from text that came from elsewhere (a server echoing a header)."""
        if self.api_key and len(self.api_key) >= 4:
            return text.replace(self.api_key, mask_secret(self.api_key))
        return text

    def _excerpt(self, response: requests.Response) -> str:
        text = " ".join(self._scrub(response.text).split())
        return text[:_EXCERPT_CHARS] + ("…" if len(text) > _EXCERPT_CHARS else "")

    def _body(self, response: requests.Response) -> Any:
        text = self._scrub(response.text)
        try:
            return json.loads(text)
        except ValueError:
            return text[: _EXCERPT_CHARS * 4]

    def _describe(self, exc: requests.RequestException) -> str:
        reason = _root_cause(exc)
        if isinstance(exc, requests.Timeout) or isinstance(reason, ReadTimeoutError):
            text = f"no answer within {self.timeout}s"
        elif isinstance(reason, NewConnectionError):
            text = "could not connect: " + str(reason).split(": ", 1)[-1]
        elif isinstance(reason, ProtocolError):
            detail = reason.args[1] if len(reason.args) > 1 else reason
            text = f"the connection was dropped ({detail})"
        else:
            text = f"{type(reason).__name__}: {reason}"
        return self._scrub(text)

    def _transport_error(
        self, exc: requests.RequestException, path: str, *, submission: bool
    ) -> ApiframeError:
        text = self._describe(exc)
        if submission and not _certainly_not_sent(exc):
            return SubmissionUnknownError(
                f"no answer to the submission to {self.base_url}{path} ({text}): "
                + UNKNOWN_SUBMISSION_HINT
            )
        return NetworkError(f"could not reach {self.base_url}{path}: {text}")

    def _status_error(
        self,
        response: requests.Response,
        path: str,
        *,
        task_id: str | None,
        submission: bool,
    ) -> ApiframeError:
        status = response.status_code
        body = self._body(response)
        messages = _error_messages(body)
        detail = "; ".join(messages) if messages else self._excerpt(response) or "(empty reply)"
        if status == 400:
            return ValidationError(messages or [detail], status_code=status, body=body)
        if status == 403 and any(m.startswith("quota reached") for m in messages):
            return QuotaExceededError(
                f"the workshop gateway refused the job: {detail} (nothing was submitted)",
                status_code=status,
                body=body,
            )
        if status in (401, 403):
            return AuthenticationError(
                f"the API key {mask_secret(self.api_key)} was refused (HTTP {status}): "
                "check APIFRAME_API_KEY or pass api_key=…",
                status_code=status,
                body=body,
            )
        if status == 404 and task_id is not None:
            return TaskNotFoundError(task_id, status_code=status, body=body)
        if status == 429:
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            hint = f"; the server asks to wait {retry_after:g}s" if retry_after is not None else ""
            return RateLimitError(
                f"too many requests to {path} (HTTP 429), still after retrying{hint}",
                retry_after=retry_after,
                status_code=status,
                body=body,
            )
        if status >= 500:
            ambiguous = submission and status != 503
            return ServerError(
                f"the server failed on {path} (HTTP {status}): {detail}"
                + (f"; {UNKNOWN_SUBMISSION_HINT}" if ambiguous else ""),
                status_code=status,
                body=body,
            )
        return ApiframeError(
            f"unexpected reply from {path} (HTTP {status}): {detail}", status_code=status, body=body
        )

    def _malformed(
        self, response: requests.Response, path: str, *, submission: bool
    ) -> ApiframeError:
        message = (
            f"unexpected reply from {path} (HTTP {response.status_code}): "
            f"{self._excerpt(response) or '(empty body)'!r}"
        )
        if submission:
            return SubmissionUnknownError(
                f"{message}; {UNKNOWN_SUBMISSION_HINT}",
                status_code=response.status_code,
                body=self._body(response),
            )
        return ApiframeError(message, status_code=response.status_code, body=self._body(response))


# -- helpers -------------------------------------------------------------------------------------


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        logger.warning("ignoring %s=%r: not a number of seconds", name, os.environ.get(name))
        return default
    return value if value >= 0 else default


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _root_cause(exc: BaseException) -> BaseException:
    """The urllib3 error under a requests exception (unwrapping MaxRetryError)."""
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    return cause if isinstance(cause, BaseException) else exc


def _certainly_not_sent(exc: requests.RequestException) -> bool:
    """True when the request never reached the server (so resubmitting is safe)."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return True
    return isinstance(_root_cause(exc), ConnectTimeoutError)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _error_messages(body: Any) -> list[str]:
    """The ``msg`` of each entry of ``{"errors": [{"msg": ...}]}``, or [] for another shape."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    messages = [e.get("msg") if isinstance(e, dict) else e for e in errors]
    return [str(m) for m in messages if m]


def _parse_task_id(data: Any) -> str:
    task_id = data["task_id"]
    if not isinstance(task_id, str) or not task_id:
        raise TypeError("task_id")
    return task_id


def _parse_tasks(data: Any) -> list[Task]:
    tasks = data["tasks"]
    if not isinstance(tasks, list):
        raise TypeError("tasks")
    return [Task.from_json(item) for item in tasks]


def _parse_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("object")
    return data


def _parse_image_url(data: Any) -> str:
    url = data["imageURL"]
    if not isinstance(url, str) or not url:
        raise TypeError("imageURL")
    return url


def sniff_image(data: bytes) -> tuple[str | None, str]:
    """The content type and file suffix of PNG, JPEG, GIF or WebP bytes; ``(None, "")`` else."""
    for signature, content_type, suffix in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return content_type, suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None, ""


def _too_big(size: int) -> Problem:
    limit = f"{UPLOAD_LIMIT:,} bytes (2 MB)"
    return Problem("image", f"the image is {size:,} bytes; the upload limit is {limit}")
