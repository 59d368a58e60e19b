"""Every way a call can fail, in one place.

::

    ApiframeError                 base of everything below
    ├── ValidationError           bad request, caught locally before any HTTP
    ├── AuthenticationError       no API key, or one that cannot be sent (control characters)
    ├── NoReplyError              no usable answer came back
    │   ├── NetworkError          a read got no answer (refused, reset, timed out) after retries
    │   └── SubmissionUnknownError  imagine was sent but no answer came back
    ├── ApiStatusError            the server answered, with an error; ``status_code``, ``body``
    │   ├── BadRequestError       400 (also a ValidationError)
    │   ├── KeyRefusedError       401/403 (also an AuthenticationError)
    │   ├── TaskNotFoundError     the server does not know this task_id (404, or a 400 saying so)
    │   ├── RateLimitError        429 after retries
    │   ├── ServerError           5xx after retries
    │   ├── QuotaExceededError    a workshop gateway refused: the participant's quota ran out
    │   ├── CancelRefusedError    a workshop gateway could not cancel: the job left its queue
    │   ├── RedirectError         a 3xx: API calls never follow one (a body is never resent)
    │   └── UnexpectedReplyError  any other status, a reply too large, or not the JSON expected
    ├── TaskFailedError           the task ended "failed"; ``.task`` holds it
    └── TaskTimeoutError          a wait ran out of time; ``.task`` holds the last state seen

``except NoReplyError`` catches "the server may not have seen it"; ``except ApiStatusError``
catches "the server said no". Messages say what to do next, and never contain a secret.

What to do next is also structured: ``hint`` (a `Hint`, or None) names it apart from
``detail`` (what happened), so that a front end without a command line (the panel, a
dashboard) words the advice for its own readers. ``str(error)`` joins the two in the words
for Python code and the terminal, where the ``runway-widget`` command is at hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, NamedTuple, Protocol

__all__ = [
    "ApiStatusError",
    "ApiframeError",
    "AuthenticationError",
    "BadRequestError",
    "CancelRefusedError",
    "KeyRefusedError",
    "NetworkError",
    "NoReplyError",
    "QuotaExceededError",
    "RateLimitError",
    "RedirectError",
    "ServerError",
    "SubmissionUnknownError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "UnexpectedReplyError",
    "ValidationError",
]

ECHO_CHARS = 80  # the most of any outside input an error message repeats


def shorten(text: object, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with "…"), so a message never echoes a flood."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def plural(n: int, word: str) -> str:
    """``1 job``, ``3 jobs``: a count and its noun, as a person would write them."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class Problem(NamedTuple):
    """One thing wrong with a request, tied to the field it concerns (None: the whole request)."""

    field: str | None
    message: str

    def __str__(self) -> str:
        return self.message


class TaskState(Protocol):
    """What a task error carries: a `runway_widget.Task` (declared here so that this module
    stands on its own, below the models)."""

    @property
    def task_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def percentage(self) -> int | None: ...
    @property
    def video_url(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def raw(self) -> Mapping[str, Any]: ...
    @property
    def is_done(self) -> bool: ...
    @property
    def is_finished(self) -> bool: ...
    @property
    def is_failed(self) -> bool: ...


class Hint(str, Enum):
    """What the reader can do next, for each front end to word in its own terms."""

    CHECK_HISTORY = "check_history"  # the job may or may not exist: look before resubmitting
    CHECK_TASK_ID = "check_task_id"  # the server does not know the id: check it, and its backend
    WAIT_AGAIN = "wait_again"  # waiting ran out, the task goes on: wait again or fetch it later


def advice(hint: Hint, task_id: str | None = None) -> str:
    """``hint`` in the words for Python code and the terminal (``task_id``: the task concerned)."""
    if hint is Hint.CHECK_HISTORY:
        return "the task may or may not exist: check `runway-widget history` before resubmitting"
    if hint is Hint.CHECK_TASK_ID:
        return ("check the id, or the backend it was submitted to "
                "(`runway-widget history` lists both)")
    return f"it is not lost: wait again, or `runway-widget fetch {shorten(task_id)}` later"


class ApiframeError(Exception):
    """Base class: ``except ApiframeError`` catches every failure of this package.

    ``refusal``: a workshop gateway's machine-readable reason (``"token_revoked"``, …; the
    values of `runway_widget.models.RefusalCode`), or None when the server gave none.
    ``detail``: what happened; ``hint``: what to do next, or None (the module's docstring).
    ``message`` (and ``str(error)``) is both, worded for Python code and the terminal.
    """

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None,
                 refusal: str | None = None, hint: Hint | None = None,
                 task_id: str | None = None) -> None:
        worded = message if hint is None else f"{message}; {advice(hint, task_id)}"
        super().__init__(worded)
        self.detail = message
        self.hint = hint
        self.message = worded
        self.status_code = status_code
        self.body = body
        self.refusal = refusal


class ValidationError(ApiframeError):
    """The request is wrong; ``problems`` lists every problem, not just the first."""

    def __init__(
        self,
        problems: Sequence[Problem | str],
        *,
        status_code: int | None = None,
        body: Any = None,
    ) -> None:
        self.problems: list[str] = [str(p) for p in problems]
        self.fields: list[str | None] = [getattr(p, "field", None) for p in problems]
        summary = "; ".join(self.problems) or "the request was rejected"
        where = "the server rejected the request" if status_code else "invalid request"
        super().__init__(f"{where}: {summary}", status_code=status_code, body=body)


class AuthenticationError(ApiframeError):
    """The API key is missing, unusable, or was refused."""


class NoReplyError(ApiframeError):
    """No usable answer came back: the server may or may not have acted on the request."""


class NetworkError(NoReplyError):
    """No answer at all (refused, reset, timed out, past the deadline), still after retrying."""


class SubmissionUnknownError(NoReplyError):
    """``imagine`` was sent but no answer came back: the job may or may not exist."""


class ApiStatusError(ApiframeError):
    """The server answered with an error; ``status_code`` and ``body`` say what it was, and
    ``retry_after`` the seconds it asked to wait (429, 503), when it said."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BadRequestError(ValidationError, ApiStatusError):
    """The server answered 400: the request (or an id in it) was rejected."""


class KeyRefusedError(AuthenticationError, ApiStatusError):
    """The server answered 401 or 403: the API key was refused."""


class RateLimitError(ApiStatusError):
    """Too many requests, still after retrying; ``retry_after`` is the server's hint in seconds."""


class ServerError(ApiStatusError):
    """The service answered 5xx, still after retrying."""


class QuotaExceededError(ApiStatusError):
    """A workshop gateway refused a submission: the message names what ran out, and
    ``limit`` says which (``"jobs"``, ``"credits"``, ``"concurrent"``, or None when the
    gateway did not say). Nothing was sent upstream, so nothing was spent."""

    def __init__(self, message: str, *, limit: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.limit = limit


class CancelRefusedError(ApiStatusError):
    """A workshop gateway could not cancel the job: it had left the queue (sent upstream,
    where it may be running and paid for, or ended). It goes on; wait for it as usual."""


class RedirectError(ApiStatusError):
    """The API answered with a redirect; it is not followed, so no body is sent twice."""

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class UnexpectedReplyError(ApiStatusError):
    """An answer this client cannot use: an unexpected status, too large, or malformed."""


class TaskNotFoundError(ApiStatusError):
    """The server does not know this task_id (or, from a batch, one of these ids)."""

    def __init__(self, task_id: str, **kwargs: Any) -> None:
        super().__init__(f"task {shorten(task_id)} is unknown to the server",
                         hint=Hint.CHECK_TASK_ID, **kwargs)
        self.task_id = task_id


class TaskFailedError(ApiframeError):
    """The task ended ``failed``; ``task`` holds it and ``task.message`` says why."""

    def __init__(self, task: TaskState) -> None:
        reason = task.message or "no reason given"
        super().__init__(f"task {shorten(task.task_id)} failed: {reason}")
        self.task = task


class TaskTimeoutError(ApiframeError):
    """Waiting ran out of time. The task goes on: wait again, or attach to it later."""

    def __init__(self, task: TaskState | None, task_id: str, timeout: float | None) -> None:
        last = f"last status {shorten(task.status)!r}" if task is not None else "no status seen yet"
        if task is not None and task.percentage is not None:
            last += f" at {task.percentage}%"
        short = shorten(task_id)
        if timeout is None:
            super().__init__(f"stopped waiting for task {short} ({last})")
        else:
            super().__init__(f"task {short} still running after {timeout:g}s ({last})",
                             hint=Hint.WAIT_AGAIN, task_id=task_id)
        self.task = task
        self.task_id = task_id
