"""Waiting for a task: poll until it finishes, fails or the wait runs out of time.

The loop only sees a ``poll(deadline)`` function, a clock and a sleep, so it is the same
against a real server and on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import NetworkError, TaskFailedError, TaskTimeoutError
from ..models import Task

__all__ = ["wait_for"]

Poll = Callable[[float], Task]


def wait_for(
    task_id: str,
    poll: Poll,
    *,
    timeout: float | None,
    interval: float,
    call_deadline: float,
    on_change: Callable[[Task], Any],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
) -> Task:
    """Poll until the task finishes; ``on_change(task)`` on every visible change.

    ``poll(seconds)`` is one fetch that must end within ``seconds``: ``call_deadline``, or
    less when the wait has less time left. Raises `TaskFailedError` or `TaskTimeoutError`,
    both carrying the last task.
    """
    deadline = None if timeout is None else clock() + timeout
    last: Task | None = None
    while True:
        task = _poll_within(task_id, poll, call_deadline, deadline, last, timeout, clock)
        if not task.same_progress(last):
            on_change(task)
        last = task
        if task.is_finished:
            return task
        if task.is_failed:
            raise TaskFailedError(task)
        pause = interval
        if deadline is not None:
            remaining = deadline - clock()
            if remaining <= 0:
                raise TaskTimeoutError(task, task_id, timeout)
            pause = min(pause, remaining)
        sleep(max(0.0, pause))


def _poll_within(
    task_id: str,
    poll: Poll,
    call_deadline: float,
    deadline: float | None,
    last: Task | None,
    timeout: float | None,
    clock: Callable[[], float],
) -> Task:
    """One poll, cut off when the wait itself runs out of time."""
    if deadline is None:
        return poll(call_deadline)
    try:
        return poll(min(call_deadline, max(0.5, deadline - clock())))
    except NetworkError:
        if clock() >= deadline:
            raise TaskTimeoutError(last, task_id, timeout) from None
        raise
