"""Every way a call can fail, in one place.

::

    ApiframeError                 base of everything below
    ├── ValidationError           bad request: caught locally (before any HTTP) or a 400
    ├── AuthenticationError       401, or no API key at all
    ├── RateLimitError            429 after retries
    ├── ServerError               5xx after retries
    ├── NetworkError              no answer from a read (connection refused, timeout) after retries
    ├── SubmissionUnknownError    imagine was sent but no answer came back
    ├── TaskNotFoundError         the server does not know this task_id
    ├── QuotaExceededError        a workshop gateway refused: the participant's quota ran out
    ├── TaskFailedError           the task ended "failed"; ``.task`` holds it
    └── TaskTimeoutError          a wait ran out of time; ``.task`` holds the last state seen

Messages say what to do next. None of them ever contains the API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Problem, Task

__all__ = [
    "ApiframeError",
    "AuthenticationError",
    "NetworkError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "SubmissionUnknownError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "ValidationError",
]


class ApiframeError(Exception):
    """Base class: ``except ApiframeError`` catches every failure of this package."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


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
    """The API key is missing or was refused."""


class RateLimitError(ApiframeError):
    """Too many requests, still after retrying; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiframeError):
    """The service answered 5xx, still after retrying."""


class NetworkError(ApiframeError):
    """No answer at all (refused, reset, timed out), still after retrying."""


class SubmissionUnknownError(ApiframeError):
    """``imagine`` was sent but no answer came back: the job may or may not exist."""


class QuotaExceededError(ApiframeError):
    """A workshop gateway refused a submission: the message names what ran out (jobs,
    credits or concurrent jobs). Nothing was sent upstream, so nothing was spent."""


class TaskNotFoundError(ApiframeError):
    """The server does not know this task_id."""

    def __init__(self, task_id: str, **kwargs: Any) -> None:
        super().__init__(
            f"task {task_id} is unknown to the server: check the id, or the backend it was "
            "submitted to (`runway-widget history` lists both)",
            **kwargs,
        )
        self.task_id = task_id


class TaskFailedError(ApiframeError):
    """The task ended ``failed``; ``task`` holds it and ``task.message`` says why."""

    def __init__(self, task: Task) -> None:
        reason = task.message or "no reason given"
        super().__init__(f"task {task.task_id} failed: {reason}")
        self.task = task


class TaskTimeoutError(ApiframeError):
    """Waiting ran out of time. The task goes on: wait again, or attach to it later."""

    def __init__(self, task: Task | None, task_id: str, timeout: float | None) -> None:
        last = f"last status {task.status!r}" if task is not None else "no status seen yet"
        if task is not None and task.percentage is not None:
            last += f" at {task.percentage}%"
        super().__init__(
            f"task {task_id} still running after {timeout:g}s ({last}); it is not lost: "
            f"wait again, or `runway-widget fetch {task_id}` later"
            if timeout is not None
            else f"stopped waiting for task {task_id} ({last})"
        )
        self.task = task
        self.task_id = task_id
