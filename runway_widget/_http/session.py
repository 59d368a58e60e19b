"""Every HTTP call the package makes: retries by policy, an overall deadline, a size cap.

A `Session` sits above a `Transport` (the wire, or memory), so what it promises holds
whatever carries the bytes:

- retries follow the caller's policy for the call (see ``retries``), never sleeping past
  the call's deadline; a ``Retry-After`` longer than the backoff ceiling (or than what is
  left of the deadline) is not slept through: the reply is handed back, and the caller
  decides;
- each call runs under a `CallDeadline`: reads check it between chunks, and the
  connections report their sockets to it, so it can cut a call off anywhere;
- replies are read in chunks and never past their cap, so an endless or huge reply costs
  at most the cap in memory; API calls never follow redirects, downloads do (unless the
  session is made not to).

Time (the deadline's clock, the retries' sleep) is the caller's to give, so a call over an
in-memory transport can be timed on a test's clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any
from urllib.parse import urljoin

import requests

from ..models import is_http_url
from .deadlines import CallDeadline, DeadlinePassed
from .retries import RetryPolicy, parse_retry_after, retry_policy
from .transport import (
    ConnectionDropped,
    HTTPTransport,
    Request,
    Response,
    Transport,
    TransportError,
)

__all__ = ["MAX_REPLY_BYTES", "Reply", "ReplyTooLarge", "Session", "UnwantedStatus"]

MAX_REPLY_BYTES = 4 * 1024 * 1024  # an API reply is a few hundred bytes; 4 MB is generous
MAX_REDIRECTS = 10  # a download follows at most this many
_REDIRECTS = frozenset([301, 302, 303, 307, 308])


class ReplyTooLarge(Exception):
    """A reply (or a download) is bigger than it may be."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        said = f" ({size:,} bytes announced)" if size is not None else ""
        super().__init__(f"the reply is larger than the {limit:,}-byte limit{said}")
        self.limit = limit
        self.size = size


class UnwantedStatus(Exception):
    """A download answered with a status other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class Reply:
    """One whole HTTP answer, read within its deadline and cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Session:
    """Bounded calls over one transport (a real ``requests`` one unless given)."""

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        user_agent: str,
        timeout: float,
        max_retries: int = 0,
        backoff_factor: float = 0.0,
        backoff_max: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        follow_redirects: bool = True,
    ) -> None:
        self.transport = transport if transport is not None else HTTPTransport()
        self.timeout = timeout
        self.follow_redirects = follow_redirects
        self._headers = {"User-Agent": user_agent}
        self._policies = {
            kind: retry_policy(
                kind, max_retries=max_retries, backoff_factor=backoff_factor,
                backoff_max=backoff_max,
            )
            for kind in ("read", "submit", "once")
        }
        self._clock = clock
        self._sleep = sleep

    def close(self) -> None:
        self.transport.close()

    def call(
        self,
        method: str,
        url: str,
        *,
        policy: str,
        deadline: float,
        limit: int = MAX_REPLY_BYTES,
        headers: Mapping[str, str] | None = None,
        **body: Any,
    ) -> Reply:
        """One call (``json=``, ``files=`` or ``data=`` for its body), redirects not followed.

        Raises `TransportError`, `DeadlinePassed` or `ReplyTooLarge`.
        """
        request = self._request(method, url, headers, body)
        with CallDeadline(deadline, clock=self._clock) as bound:
            try:
                response = self._exchange(request, self._policies[policy], bound)
                try:
                    content = _read_capped(response, limit, bound)
                finally:
                    response.close()
                bound.confirm()
            except TransportError:
                bound.check()  # a socket shut down by the deadline shows up as a dropped one
                raise
        return Reply(response.status, response.headers, content)

    def download(
        self, url: str, out: IO[bytes], *, limit: int, base_seconds: float, min_rate: float
    ) -> int:
        """Stream ``url`` into ``out``; returns the bytes written.

        Redirects are followed unless the session was made not to. The reply must start
        within ``base_seconds``; the whole transfer then gets ``base_seconds`` plus its size
        at ``min_rate`` bytes a second (the announced size, else the size limit) and must
        keep that average rate. A status other than 200 (a redirect not followed, too)
        raises `UnwantedStatus`.
        """
        with CallDeadline(base_seconds, clock=self._clock) as bound:
            try:
                response = self._follow(url, bound)
                try:
                    if response.status != 200:
                        raise UnwantedStatus(response.status)
                    announced = _announced_length(response.headers)
                    if announced is not None and announced > limit:
                        raise ReplyTooLarge(limit, announced)
                    bound.extend(base_seconds + (announced or limit) / min_rate)
                    written = _copy(response, out, bound, limit, base_seconds, min_rate)
                finally:
                    response.close()
                bound.confirm()
                return written
            except TransportError:
                bound.check()
                raise

    # -- one exchange, retried -------------------------------------------------------------

    def _request(
        self, method: str, url: str, headers: Mapping[str, str] | None, body: dict[str, Any]
    ) -> Request:
        """The request as it goes on the wire (``requests`` encodes JSON and multipart)."""
        prepared = requests.Request(
            method, url, headers={**self._headers, **(headers or {})}, **body
        ).prepare()
        content = prepared.body or b""
        data = content.encode() if isinstance(content, str) else content
        if not isinstance(data, bytes):
            raise TypeError("a request body must be whole bytes, not a stream")
        fields = {name: str(value) for name, value in prepared.headers.items()}
        return Request(method, url, fields, data, self.timeout)

    def _send(self, request: Request, bound: CallDeadline) -> Response:
        if bound.remaining() <= 0:
            raise DeadlinePassed(bound.seconds, before_sending=True)
        return self.transport.handle(replace(request, timeout=self._read_timeout(bound)))

    def _exchange(self, request: Request, policy: RetryPolicy, bound: CallDeadline) -> Response:
        """Send, and send again as ``policy`` allows; the last response or failure stands."""
        failures = 0
        while True:
            try:
                response = self._send(request, bound)
            except TransportError as exc:
                bound.check()  # a socket shut down by the deadline fails like a dropped one
                if failures >= policy.retries or not policy.retries_failure(exc):
                    raise
                wait = policy.backoff(failures + 1)
            else:
                if failures >= policy.retries or response.status not in policy.statuses:
                    return response
                asked = self._retry_wait(response, policy, failures + 1, bound)
                if asked is None:
                    return response
                response.close()
                wait = asked
            failures += 1
            self._sleep(min(wait, bound.remaining()))

    def _retry_wait(
        self, response: Response, policy: RetryPolicy, failures: int, bound: CallDeadline
    ) -> float | None:
        """Seconds before retrying ``response``; None: hand it back (a wait too long)."""
        asked = parse_retry_after(response.headers.get("Retry-After"))
        if asked is None:
            return policy.backoff(failures)
        return asked if asked <= min(policy.backoff_max, bound.remaining()) else None

    def _follow(self, url: str, bound: CallDeadline) -> Response:
        """GET ``url``, following redirects to http(s) URLs (a download's CDN hops)."""
        request = self._request("GET", url, None, {})
        if not self.follow_redirects:
            return self._send(request, bound)
        for _ in range(MAX_REDIRECTS):
            response = self._send(request, bound)
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            response.close()
            target = urljoin(request.url, location)
            if not is_http_url(target):
                raise UnwantedStatus(response.status)
            request = replace(request, url=target)
        return self._send(request, bound)

    def _read_timeout(self, bound: CallDeadline) -> float:
        return max(0.001, min(self.timeout, bound.remaining()))


def _announced_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length of an unencoded body (a compressed one is longer once decoded)."""
    value = headers.get("Content-Length", "")
    if "Content-Encoding" in headers or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _chunks(response: Response, bound: CallDeadline) -> Iterator[bytes]:
    for chunk in response.iter_bytes():
        bound.check()
        yield chunk


def _copy(
    response: Response,
    out: IO[bytes],
    bound: CallDeadline,
    limit: int,
    base_seconds: float,
    min_rate: float,
) -> int:
    announced = _announced_length(response.headers)
    written = 0
    for chunk in _chunks(response, bound):
        written += len(chunk)
        if written > limit:
            raise ReplyTooLarge(limit)
        allowed = base_seconds + written / min_rate
        if bound.elapsed() > allowed:
            raise DeadlinePassed(allowed)
        out.write(chunk)
    if announced is not None and written != announced:
        raise ConnectionDropped(f"cut short at {written:,} of {announced:,} bytes")
    return written


def _read_capped(response: Response, limit: int, bound: CallDeadline) -> bytes:
    announced = _announced_length(response.headers)
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
