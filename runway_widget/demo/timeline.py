"""The life of one demo task, as a pure function of the clock.

A task is ``staged``, then ``starting``, then ``processing`` with a percentage that rises
linearly with time (sent as a string, like the real service), then ``finished`` once both its
job time has passed and its clip is rendered, or ``failed`` with a message. Because the state
is computed from timestamps, the moment a task finished is exact, whoever asks and whenever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .render_pool import Render

STAGED_UNTIL = 0.05  # fractions of the job time
STARTING_UNTIL = 0.12
RENDER_FAILURE_AT = 0.3  # a render error shows no earlier than this far into the job


@dataclass
class DemoTask:
    """One submitted job. ``render`` is None for a job planned to fail (moderation, faults)."""

    task_id: str
    payload: dict[str, Any]
    submitted_at: float
    job_seconds: float
    render: Render | None = None
    fail_after: float | None = None
    fail_message: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    def ends_at(self) -> float | None:
        """When (on the server's clock) the task is or will be finished or failed; None: not
        known yet."""
        if self.fail_after is not None:
            return self.submitted_at + self.fail_after * self.job_seconds
        if self.render is None or self.render.done_at is None:
            return None
        earliest = RENDER_FAILURE_AT if self.render.error else 1.0
        return max(self.submitted_at + earliest * self.job_seconds, self.render.done_at)

    def next_change(self, now: float) -> float | None:
        """When the state may next change visibly (status or 10 % step); None when that hangs
        on the render (or the task is over)."""
        ends = self.ends_at()
        if ends is not None and now >= ends:
            return None
        job = self.job_seconds
        marks = [STAGED_UNTIL * job, STARTING_UNTIL * job]
        if job > 0:
            step = int(10 * (now - self.submitted_at) / job) + 1
            marks.append(min(step, 10) * job / 10)
        later = [self.submitted_at + m for m in marks if self.submitted_at + m > now]
        if ends is not None:
            later.append(ends)
        return min(later) if later else None

    def failure(self) -> str | None:
        if self.fail_after is not None:
            return self.fail_message
        return self.render.error if self.render is not None else None

    def is_finished(self, now: float) -> bool:
        ends = self.ends_at()
        return ends is not None and now >= ends and self.failure() is None

    def snapshot(self, now: float, video_url: str) -> dict[str, Any]:
        """The task as ``/fetch`` returns it at time ``now``."""
        data: dict[str, Any] = {"task_id": self.task_id, "task_type": "runway"}
        ends = self.ends_at()
        if ends is not None and now >= ends:
            message = self.failure()
            if message is None:
                data.update(status="finished", percentage=100, video_url=video_url)
            else:
                data.update(status="failed", percentage=self._percent(ends), message=message)
            return data
        fraction = (now - self.submitted_at) / self.job_seconds if self.job_seconds > 0 else 1.0
        if fraction < STAGED_UNTIL:
            data.update(status="staged", percentage="0")
        elif fraction < STARTING_UNTIL:
            data.update(status="starting", percentage="0")
        else:
            data.update(status="processing", percentage=self._percent(now))
        return data

    def _percent(self, when: float) -> str:
        if self.job_seconds <= 0:
            return "99"
        fraction = (when - self.submitted_at) / self.job_seconds
        return str(max(0, min(99, int(100 * fraction))))
