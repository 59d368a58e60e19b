"""One job as the panel knows it: what was asked and where it stands, apart from any widget.

A `Job` is updated from several threads (the tracker's poller, a webhook connection, the
panel's background work, the history on start) and read by whatever shows it. It holds a lock
around its state, never moves back (a terminal state stays, progress only rises), and tells
its observers after each change, outside the lock. What it shows (``payload``, `describe`) never
carries the webhook secret; the request kept in memory for "try again" does, as the form made it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..models import GenerationRequest, Task, waiting_label

logger = logging.getLogger("runway_widget.widget.job")

Observer = Callable[["Job"], object]

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CHECKING = "checking"  # how a job the history says runs is counted until the backend answers


@dataclass(frozen=True)
class JobState:
    """A consistent copy of a job's changing fields, taken under its lock."""

    task: Task | None = None
    progress: float = 0.0
    finished_at: float | None = None
    local_path: str | None = None
    problem: str | None = None
    save_error: str | None = None
    saving: bool = False
    checked: bool = True  # False until the backend speaks of a job known from elsewhere

    @property
    def status(self) -> str:
        """``running``, ``finished`` or ``failed``."""
        task = self.task
        if task is None or not task.is_done:
            return RUNNING
        return FINISHED if task.is_finished else FAILED

    @property
    def counted_as(self) -> str:
        """`status`, or ``checking`` for a job the history says runs, until the backend
        says how it stands (it may have finished while no kernel watched)."""
        status = self.status
        return CHECKING if status == RUNNING and not self.checked else status


class Job:
    """A task the panel follows: its request, its latest state, and where its clip is."""

    def __init__(
        self,
        task_id: str,
        request: GenerationRequest | Mapping[str, Any] | None = None,
        *,
        backend: str | None = None,
        submitted_at: float | None = None,
        local_path: str | None = None,
        checked: bool = True,
    ) -> None:
        self.task_id = task_id
        if isinstance(request, GenerationRequest):
            payload = request.public_payload()
            self._request: GenerationRequest | None = request
        else:
            payload = dict(request or {})
            payload.pop("webhook_secret", None)
            self._request = GenerationRequest.from_payload(payload) if payload else None
        self.payload: dict[str, Any] = payload
        self.backend = backend
        self.submitted_at = submitted_at or time.time()
        self._lock = threading.Lock()
        self._state = JobState(local_path=local_path, checked=checked)
        self._observers: list[Observer] = []

    # ----- reading ----------------------------------------------------------------------------

    @property
    def request(self) -> GenerationRequest | None:
        """The request to send again (None when the task was attached by id only)."""
        return self._request

    @property
    def has_secret(self) -> bool:
        """Whether the request carried a webhook secret (the secret itself is never shown)."""
        return self._request is not None and bool(self._request.webhook_secret)

    @property
    def prompt(self) -> str:
        return str(self.payload.get("prompt") or "")

    def snapshot(self) -> JobState:
        with self._lock:
            return self._state

    @property
    def state(self) -> str:
        """``running``, ``finished`` or ``failed``."""
        return self.snapshot().status

    @property
    def task(self) -> Task | None:
        return self.snapshot().task

    @property
    def progress(self) -> float:
        return self.snapshot().progress

    @property
    def local_path(self) -> str | None:
        return self.snapshot().local_path

    @property
    def video_url(self) -> str | None:
        task = self.task
        return task.video_url if task is not None else None

    # ----- changing (any thread) ----------------------------------------------------------------

    def apply(self, task: Task, *, when: float | None = None) -> bool:
        """Take a new task state; False when ignored (a terminal state stays, no news).

        ``when``: the time of this state if it is not now (a job from the history). A state
        that is now (from the backend) makes the job checked, news or not.
        """
        with self._lock:
            old = self._state
            if old.task is not None and (old.task.is_done or task.same_progress(old.task)):
                if old.checked or when is not None:
                    return False
                self._state = replace(old, checked=True)
                news = False
            else:
                self._state = self._next(old, task, when)
                news = True
        self._notify()
        return news

    @staticmethod
    def _next(old: JobState, task: Task, when: float | None) -> JobState:
        """The state after ``task``, which is news."""
        progress = old.progress
        if task.is_finished:
            progress = 100.0
        elif task.percentage is not None:
            progress = max(progress, min(100.0, float(task.percentage)))
        finished_at = (when or time.time()) if task.is_done else None
        return replace(old, task=task, progress=progress, finished_at=finished_at,
                       checked=old.checked or when is None)

    def advance(self, percentage: float) -> None:
        """An interpolated percentage between polls: the bar keeps moving, never back."""
        with self._lock:
            old = self._state
            if old.task is not None and old.task.is_done:
                return
            value = max(old.progress, min(100.0, float(percentage)))
            if value == old.progress:
                return
            self._state = replace(old, progress=value)
        self._notify()

    def note_problem(self, why: str | None) -> None:
        """A problem with following the task (not a failure of the task itself)."""
        self._change(problem=why)

    def start_saving(self) -> bool:
        """Mark a save as under way; False when one already is (a second click)."""
        with self._lock:
            if self._state.saving:
                return False
            self._state = replace(self._state, saving=True, save_error=None)
        self._notify()
        return True

    def saved(self, path: str) -> None:
        self._change(local_path=path, saving=False, save_error=None)

    def save_failed(self, why: str) -> None:
        self._change(saving=False, save_error=why)

    def _change(self, **fields: Any) -> None:
        with self._lock:
            new = replace(self._state, **fields)
            if new == self._state:
                return
            self._state = new
        self._notify()

    # ----- observers ----------------------------------------------------------------------------

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(job)`` after every change, from the thread that made it."""
        with self._lock:
            self._observers.append(observer)

        def unsubscribe() -> None:
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)

        return unsubscribe

    def _notify(self) -> None:
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            try:
                observer(self)
            except Exception:
                logger.exception("an observer of job %s failed", self.task_id)

    # ----- text -----------------------------------------------------------------------------------

    def describe(self) -> str:
        """One line of text for frontends without widgets."""
        state = self.snapshot()
        task = state.task
        if task is None:
            where = "submitted"
        elif task.is_finished:
            where = f"finished, {state.local_path or task.video_url or 'no video URL'}"
        elif task.is_failed:
            where = f"failed: {task.message or 'no reason given'}"
        else:
            pct = f" {state.progress:.0f}%" if state.progress else ""
            where = waiting_label(task) or f"{task.status}{pct}"
        prompt = " ".join((self.prompt or "?").split())
        if len(prompt) > 60:
            prompt = prompt[:59].rstrip() + "…"
        return f"[{self.task_id}] {prompt!r}: {where}"

    def __repr__(self) -> str:
        return f"Job({self.describe()})"
