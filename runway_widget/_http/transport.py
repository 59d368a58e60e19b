"""HTTP for the client: retries, an overall deadline for every call, a size cap for every reply.

Retries live in urllib3's `Retry` (see `retry_policy`), mounted on ``requests`` adapters:
the caller picks the policy for each call (``"read"``, ``"submit"`` or ``"once"``).

Each call runs under a `CallDeadline` (see ``deadlines``): reads check it between chunks,
and the connections report their sockets to it, so it can cut a call off anywhere. Replies
are read with ``stream=True`` and never past their cap, so an endless or huge reply costs
at most the cap in memory. API calls never follow redirects (`Transport.call` hands 3xx back).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import takewhile
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from .deadlines import CallDeadline, DeadlinePassed, current_deadline

__all__ = [
    "Reply",
    "ReplyTooLarge",
    "Transport",
    "WatchedAdapter",
    "retry_policy",
]

MAX_REPLY_BYTES = 4 * 1024 * 1024  # an API reply is a few hundred bytes; 4 MB is generous
READ_RETRY_STATUSES = frozenset([429, *range(500, 600)])
SUBMIT_RETRY_STATUSES = frozenset([429, 503])
_CHUNK = 64 * 1024


class ReplyTooLarge(Exception):
    """A reply (or a download) is bigger than it may be."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        said = f" ({size:,} bytes announced)" if size is not None else ""
        super().__init__(f"the reply is larger than the {limit:,}-byte limit{said}")
        self.limit = limit
        self.size = size


class _WatchedHTTPConnection(HTTPConnection):
    """Hands the running call's deadline the connection, then the socket it sent on."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = current_deadline()
        if deadline is not None:
            deadline.watch(self)
        super().request(*args, **kwargs)
        if deadline is not None:
            deadline.hold(self.sock)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same, over TLS."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """An adapter whose connections report to the running call's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


class _JitterRetry(Retry):
    """urllib3 `Retry` with full-jitter backoff, never sleeping past the call's deadline.

    Full jitter (a uniform draw up to the exponential cap) spreads the retries of many
    clients that failed together. A Retry-After longer than ``backoff_max`` (or than what
    is left of the deadline) is not slept through: the reply is handed back at once, so the
    call fails with `RateLimitError.retry_after` and the caller decides.
    """

    def get_backoff_time(self) -> float:
        errors = len(list(takewhile(lambda h: h.redirect_location is None, reversed(self.history))))
        if errors == 0:
            return 0.0
        return random.uniform(0.0, min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1)))

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except (InvalidHeader, ValueError, OverflowError):
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
            deadline = current_deadline()
            limit = min(self.backoff_max, deadline.remaining() if deadline else self.backoff_max)
            if wait is not None and wait > limit:
                raise MaxRetryError(_pool, url or "", ResponseError(f"Retry-After {wait:g}s"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Any = None) -> None:
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None:
                time.sleep(max(0.0, wait))
                return
        deadline = current_deadline()
        backoff = self.get_backoff_time()
        time.sleep(min(backoff, deadline.remaining()) if deadline is not None else backoff)


def retry_policy(
    kind: str, *, max_retries: int, backoff_factor: float, backoff_max: float
) -> Retry:
    """urllib3 retries for ``kind``: ``read``, ``submit`` or ``once``.

    Reads retry 429, 5xx, refused connections, timeouts and dropped connections. A
    submission costs credits and has no idempotency key, so it is retried only when the
    server certainly did not take it (429, 503, a connection that never opened). ``once``
    is for a caller that schedules its own retries (the tracker).
    """
    if kind == "once":
        return Retry(total=0, redirect=0, raise_on_status=False, raise_on_redirect=False)
    common: dict[str, Any] = {
        "total": max_retries,
        "redirect": 0,
        "raise_on_redirect": False,
        "backoff_factor": backoff_factor,
        "backoff_max": backoff_max,
        "raise_on_status": False,
    }
    if kind == "read":
        return _JitterRetry(
            allowed_methods=frozenset(["GET", "HEAD", "POST"]),
            status_forcelist=READ_RETRY_STATUSES,
            **common,
        )
    return _JitterRetry(
        connect=max_retries,
        read=0,
        other=0,
        status=max_retries,
        allowed_methods=frozenset(["POST"]),
        status_forcelist=SUBMIT_RETRY_STATUSES,
        **common,
    )


@dataclass(frozen=True)
class Reply:
    """One whole HTTP answer, read within its deadline and cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Transport:
    """A ``requests`` session with one adapter per retry policy, and bounded calls.

    ``adapter`` makes each policy's adapter (a `WatchedAdapter` unless the caller connects
    its own way, see ``outbound``); ``follow_redirects`` is for `download`; ``trust_env``
    takes proxies and certificates from the environment, as ``requests`` does.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        timeout: float,
        max_retries: int,
        backoff_factor: float,
        backoff_max: float,
        adapter: Callable[..., HTTPAdapter] | None = None,
        follow_redirects: bool = True,
        trust_env: bool = True,
    ) -> None:
        self.timeout = timeout
        self.follow_redirects = follow_redirects
        self.session = requests.Session()
        self.session.trust_env = trust_env
        self.session.headers["User-Agent"] = user_agent
        make_adapter = adapter or WatchedAdapter
        self._adapters = {
            kind: make_adapter(
                max_retries=retry_policy(
                    kind,
                    max_retries=max_retries,
                    backoff_factor=backoff_factor,
                    backoff_max=backoff_max,
                )
            )
            for kind in ("read", "submit", "once")
        }
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, self._adapters["read"])
        self._environment: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        self.session.close()
        for adapter in self._adapters.values():
            adapter.close()

    def call(
        self,
        method: str,
        url: str,
        *,
        policy: str,
        deadline: float,
        limit: int = MAX_REPLY_BYTES,
        **request: Any,
    ) -> Reply:
        """One API call, redirects not followed.

        Raises ``requests`` errors, `DeadlinePassed` or `ReplyTooLarge`.
        """
        prepared = self.session.prepare_request(requests.Request(method, url, **request))
        settings = self._environment_settings(prepared.url or url)
        with CallDeadline(deadline) as bound:
            try:
                response = self._adapters[policy].send(
                    prepared, timeout=self._read_timeout(bound), **settings
                )
                with response:
                    body = _read_capped(response, limit, bound)
                bound.confirm()
            except requests.RequestException:
                bound.check()  # a socket shut down by the deadline shows up as a dropped one
                raise
            return Reply(response.status_code, response.headers, body)

    def download(
        self,
        url: str,
        out: IO[bytes],
        *,
        limit: int,
        base_seconds: float,
        min_rate: float,
    ) -> int:
        """Stream ``url`` into ``out``; returns the bytes written.

        Redirects are followed only if the transport was made to. The reply must start
        within ``base_seconds``; the whole transfer then gets ``base_seconds`` plus its size
        at ``min_rate`` bytes a second (the announced size, else the size limit) and must
        keep that average rate. A status other than 200 (a redirect not followed, too)
        raises ``requests.HTTPError``.
        """
        with CallDeadline(base_seconds) as bound:
            try:
                with self.session.get(
                    url,
                    stream=True,
                    timeout=self._read_timeout(bound),
                    allow_redirects=self.follow_redirects,
                ) as response:
                    if response.status_code != 200:
                        raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
                    announced = _announced_length(response)
                    if announced is not None and announced > limit:
                        raise ReplyTooLarge(limit, announced)
                    bound.extend(base_seconds + (announced or limit) / min_rate)
                    written = _copy(response, out, bound, limit, base_seconds, min_rate)
                bound.confirm()
                return written
            except requests.RequestException:
                bound.check()
                raise

    def _environment_settings(self, url: str) -> dict[str, Any]:
        """Proxies and certificates from the environment, read once per origin: reading
        them costs more than a loopback call, and every call goes to the same few hosts."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        settings = self._environment.get(origin)
        if settings is None:
            settings = self.session.merge_environment_settings(url, {}, True, None, None)
            self._environment[origin] = settings
        return settings

    def _read_timeout(self, bound: CallDeadline) -> float:
        return max(0.001, min(self.timeout, bound.remaining()))


def _announced_length(response: requests.Response) -> int | None:
    """The Content-Length of an unencoded body (a compressed one is longer once decoded)."""
    value = response.headers.get("Content-Length", "")
    if "Content-Encoding" in response.headers or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _chunks(response: requests.Response, bound: CallDeadline) -> Iterator[bytes]:
    for chunk in response.iter_content(_CHUNK):
        bound.check()
        yield chunk


def _copy(
    response: requests.Response,
    out: IO[bytes],
    bound: CallDeadline,
    limit: int,
    base_seconds: float,
    min_rate: float,
) -> int:
    announced = _announced_length(response)
    written = 0
    for chunk in _chunks(response, bound):
        written += len(chunk)
        if written > limit:
            raise ReplyTooLarge(limit)
        allowed = base_seconds + written / min_rate
        if time.monotonic() - bound.started > allowed:
            raise DeadlinePassed(allowed)
        out.write(chunk)
    if announced is not None and written != announced:
        raise requests.ConnectionError(f"cut short at {written:,} of {announced:,} bytes")
    return written


def _read_capped(response: requests.Response, limit: int, bound: CallDeadline) -> bytes:
    announced = _announced_length(response)
    if announced is not None and announced > limit:
        raise ReplyTooLarge(limit, announced)
    parts: list[bytes] = []
    size = 0
    for chunk in _chunks(response, bound):
        size += len(chunk)
        if size > limit:
            raise ReplyTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)
