"""The APIFRAME Runway client: submit, fetch, wait, upload and download.

Every call goes one way: `ApiCalls` (key, budget, errors, parsing) over a `Session`
(retries, deadlines, size caps) over a `Transport` (the wire, or memory: ``transport=``).
What is left here is the API itself:

- reads (``/fetch``, ``/fetch-many``, ``/account``) retry 429, 5xx and network errors;
  ``/runway-imagine`` costs credits, so it is retried only when the server certainly did
  not take it, and raises `SubmissionUnknownError` when it cannot know;
- every read first takes a token from ``read_budget``, so all callers of one client
  together stay under its request rate (``fetch_batch(retry=False)`` leaves that to its
  caller);
- every call ends: ``deadline`` seconds at most (``timeout`` bounds each socket read),
  replies capped at a few MB, downloads capped by ``download_limit`` and a deadline that
  grows with their size.

The API key only travels in the ``Authorization`` header of calls to the API itself;
everywhere else it is masked (`mask_secret`) or scrubbed (`Redactor`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from .._http.addresses import is_loopback_url, is_own_loopback_url
from .._http.session import Session
from .._http.transport import HTTPTransport, Transport
from .._secrets import mask_secret
from .._version import __version__
from ..models import (
    FETCH_MANY_LIMIT,
    UPLOAD_LIMIT,
    GenerationRequest,
    Task,
)
from .budget import RequestBudget
from .calls import ApiCalls
from .credentials import resolve as resolve_credentials
from .downloads import download_video
from .fetching import BatchFetcher
from .uploads import prepare_upload
from .waiting import wait_for

if TYPE_CHECKING:
    from ..store import JobStore

__all__ = [
    "DEFAULT_BASE_URL",
    "FETCH_MANY_LIMIT",
    "UPLOAD_LIMIT",
    "ApiframeClient",
    "mask_secret",
]

DEFAULT_BASE_URL = "https://api.apiframe.pro"
DEFAULT_POLL_INTERVAL = 3.0
DOWNLOAD_LIMIT = 1024**3  # 1 GiB: a 10 s clip is tens of MB
DOWNLOAD_MIN_RATE = 64 * 1024  # bytes a second a download must average

logger = logging.getLogger("runway_widget.client")


class ApiframeClient:
    """One session to the APIFRAME Runway API (or the demo backend that speaks it).

    Constructing never touches the network; a missing or unusable API key is reported by
    the first call. ``timeout`` bounds each socket read, ``deadline`` (default 4 ×
    ``timeout``) a whole call, retries included. ``demo=True`` marks the embedded demo
    backend (nothing is paid); `demo` sets it.

    ``transport`` carries the bytes (default: real connections); a `MockTransport` answers
    in memory, with retries, deadlines, caps and errors working as they do on the network.
    ``clock`` and ``sleep`` are the time the client's deadlines, budget and waits run on.
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
        deadline: float | None = None,
        download_limit: int = DOWNLOAD_LIMIT,
        download_min_rate: float = DOWNLOAD_MIN_RATE,
        demo: bool = False,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        credentials = resolve_credentials(api_key, base_url)
        base = (credentials.base_url or DEFAULT_BASE_URL).strip().rstrip("/")
        self._workshop = credentials.source in ("join", "jupyterhub")
        self._participant = credentials.participant
        self.timeout = timeout
        self.download_limit = download_limit
        self.download_min_rate = download_min_rate
        self.poll_interval = _env_seconds("RUNWAY_WIDGET_POLL_INTERVAL", DEFAULT_POLL_INTERVAL)
        self._store = store
        self._demo = demo
        self._clock = clock
        self._sleep = sleep
        self._http = Session(
            transport,
            user_agent=f"runway_widget/{__version__}",
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            clock=clock,
            sleep=sleep,
        )
        self._api = ApiCalls(
            self._http,
            base,
            credentials.api_key,
            deadline=deadline if deadline is not None else 4 * timeout,
            budget=RequestBudget(requests_per_second, burst=2, clock=clock, sleep=sleep),
        )
        self._batches = BatchFetcher(self._api)

    # -- construction and identity -------------------------------------------------------------

    @classmethod
    def demo(cls, **kwargs: Any) -> ApiframeClient:
        """A client on this process's shared demo backend (started on first use).

        The one place the client reaches for the demo package, on demand only.
        """
        from ..demo import shared_demo_server

        server = shared_demo_server()
        return cls(api_key=server.api_key, base_url=server.base_url, demo=True, **kwargs)

    @property
    def api_key(self) -> str | None:
        """The key, stripped of surrounding whitespace (a key read from a file ends in "\\n")."""
        return self._api.key

    @api_key.setter
    def api_key(self, value: str | None) -> None:
        self._api.key = value

    @property
    def base_url(self) -> str:
        """Fixed for the client's life."""
        return self._api.base_url

    @property
    def deadline(self) -> float:
        """Seconds a whole call may take, retries included."""
        return self._api.deadline

    @deadline.setter
    def deadline(self, seconds: float) -> None:
        self._api.deadline = seconds

    @property
    def read_budget(self) -> RequestBudget:
        """The request budget every read draws from (the tracker's polls too)."""
        return self._api.budget

    @read_budget.setter
    def read_budget(self, budget: RequestBudget) -> None:
        self._api.budget = budget

    @property
    def transport(self) -> Transport:
        """What carries the client's bytes (and its media reads, and its downloads)."""
        return self._http.transport

    @property
    def is_demo(self) -> bool:
        """True on the embedded demo backend: nothing is paid, videos are rendered locally.

        Set by `demo` or ``demo=True``; a client built by hand on a loopback backend learns
        it from the first `account` that answers ``"plan": "demo"``.
        """
        return self._demo

    @property
    def is_workshop(self) -> bool:
        """True through a workshop gateway: one joined, the hub's, or any backend whose
        `account` answered ``"plan": "workshop"`` (a token from ``gateway token add``)."""
        return self._workshop

    @property
    def participant(self) -> str | None:
        """The name this client has at its workshop gateway (None: unknown, or no gateway)."""
        return self._participant

    @property
    def session(self) -> requests.Session | None:
        """The ``requests`` session under every call (headers, proxies, certificates);
        None when the client runs on another transport."""
        transport = self._http.transport
        return transport.session if isinstance(transport, HTTPTransport) else None

    @property
    def store(self) -> JobStore:
        """The job history every submission is journalled to (default location unless given)."""
        if self._store is None:
            from ..store import JobStore

            self._store = JobStore()
        return self._store

    def is_own_backend(self, url: str | None) -> bool:
        """True when ``url`` is on this client's own backend *and* that backend is loopback.

        Only such URLs (the demo server, a gateway on this machine) may be read by the
        kernel on a server's say-so; any other loopback or private address in a reply could
        carry internal data into a notebook, so it is never fetched.
        """
        return is_own_loopback_url(self.base_url, url)

    def __repr__(self) -> str:
        demo = ", demo" if self.is_demo else ""
        return (
            f"ApiframeClient(base_url={self.base_url!r}, api_key={mask_secret(self.api_key)!r}"
            f"{demo})"
        )

    def close(self) -> None:
        self._http.close()

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
        task_id = self._api.call(
            "POST",
            "/runway-imagine",
            parse=_parse_task_id,
            policy="submit",
            secrets=[request.webhook_secret],
            json=request.to_payload(),
        )
        self.store.record_submission(task_id, request, backend=self.base_url, demo=self.is_demo)
        logger.info("submitted task %s to %s", task_id, self.base_url)
        return task_id

    def fetch(self, task_id: str) -> Task:
        """The task's current state; `TaskNotFoundError` if the server does not know it."""
        return self._batches.one(task_id)

    def fetch_batch(self, ids: list[str], *, retry: bool = True) -> dict[str, Task]:
        """One logical call for at most 20 ids: only the tasks the server returned.

        One id goes to ``/fetch`` (unknown -> ``{}``), more to ``/fetch-many``; a batch
        refused for an unknown id is split until the unknown ones are isolated
        (``retry=False``: nothing returned, so the caller checks each id alone).
        ``retry=False`` is for a scheduler that paces itself (the tracker): exactly one HTTP
        attempt and no token taken here, since it reserves one from ``read_budget`` first.
        """
        return self._batches.batch(ids, retry=retry)

    def fetch_many(self, ids: Iterable[str]) -> list[Task]:
        """Any number of tasks, in the order asked, in as few requests as the API allows.

        A task the server does not know comes back as `Task.unknown` (status ``failed``,
        ``raw["not_found"]``), so one bad id never costs the others' results.
        """
        return self._batches.many(ids)

    def cancel(self, task_id: str) -> Task:
        """Withdraw a job that waits in a workshop gateway's queue (its quota is free again);
        returns the task, now failed as cancelled. `CancelRefusedError` once it has left the
        queue (it goes on). Only a gateway queues jobs; other backends know no such call.
        """
        task = self._api.call(
            "DELETE",
            f"/task/{quote(task_id, safe='')}",
            parse=Task.from_json,
            policy="once",
            task_ids=[task_id],
        )
        self.store.record_task(task, backend=self.base_url)
        return task

    def account(self) -> dict[str, Any]:
        """``{"email", "credits", "total_images", "plan"}`` of the key's account."""
        info = self._api.call("GET", "/account", parse=_parse_object, take_token=True)
        if info.get("plan") == "demo" and is_loopback_url(self.base_url):
            self._demo = True  # a demo backend in this process or machine, built by hand
        if info.get("plan") == "workshop":
            self._workshop = True
            name = info.get("email")
            self._participant = name if isinstance(name, str) and name else self._participant
        return info

    def upload_image(self, image: str | os.PathLike[str] | bytes) -> str:
        """Upload a first/last frame (a path or the bytes, at most 2 MB); returns its URL."""
        name, data, content_type = prepare_upload(image)
        return self._api.call(
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
        carrying the last task seen). The task itself goes on after a timeout. No poll
        outlives ``timeout``: a server that stalls ends the wait on time.
        """
        def on_change(task: Task) -> None:
            self.store.record_task(task, backend=self.base_url)
            if on_progress is not None:
                on_progress(task)

        return wait_for(
            task_id,
            lambda seconds: self._batches.one(task_id, deadline=seconds),
            timeout=timeout,
            interval=self.poll_interval if poll_interval is None else poll_interval,
            call_deadline=self.deadline,
            on_change=on_change,
            clock=self._clock,
            sleep=self._sleep,
        )

    def download(self, task_or_url: Task | str, path: str | os.PathLike[str]) -> Path:
        """Save a video to ``path`` (a file, or a folder to put it in); returns the file.

        Streamed to a temporary file next to the destination and renamed into place, so
        the destination is either the whole video or untouched, never a half-written MP4.
        At most ``download_limit`` bytes, at ``download_min_rate`` bytes a second or better.
        """
        destination = download_video(
            self._http, task_or_url, path, limit=self.download_limit, timeout=self.timeout,
            min_rate=self.download_min_rate, redact=self._api.redact)
        if isinstance(task_or_url, Task):
            self.store.record_download(task_or_url.task_id, destination)
        logger.info("saved the video to %s", destination)
        return destination


# -- helpers -------------------------------------------------------------------------------------


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        logger.warning("ignoring %s=%r: not a number of seconds", name, os.environ.get(name))
        return default
    return value if 0 <= value < float("inf") else default


def _parse_task_id(data: Any) -> str:
    task_id = data["task_id"]
    if not isinstance(task_id, str) or not task_id:
        raise TypeError("task_id")
    return task_id


def _parse_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError("object")
    return data


def _parse_image_url(data: Any) -> str:
    url = data["imageURL"]
    if not isinstance(url, str) or not url:
        raise TypeError("imageURL")
    return url
