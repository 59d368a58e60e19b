"""Rendering off the request path: a small worker pool with a cache keyed by what is drawn.

Two requests that would draw the same clip (same prompt, type, inputs, size, duration, flip)
share one render, so a benchmark submitting one prompt twenty times renders it once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .renderer import InputError, Inputs, RenderCancelled, RenderSpec, render

logger = logging.getLogger("runway_widget.demo")

_STOPPED = "the demo server stopped before the clip was rendered"


@dataclass
class Render:
    """One clip being rendered; ``done_at`` (the pool's clock) is set once it ended."""

    spec: RenderSpec
    path: Path
    done_at: float | None = None
    error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def ok(self) -> bool:
        return self.done_at is not None and self.error is None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the render is done; True if it is."""
        return self._done.wait(timeout)

    def _finish(self, error: str | None, at: float) -> None:
        self.error = error
        self.done_at = at
        self._done.set()


class RenderPool:
    """Renders `RenderSpec`s into ``out_dir`` on ``workers`` daemon threads, each spec once.

    Plain daemon threads rather than an executor: an executor's threads are joined when the
    interpreter exits, which would make a kernel wait for every queued clip.
    """

    def __init__(
        self, out_dir: Path, inputs: Inputs, workers: int = 2, *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._out_dir = Path(out_dir)
        self._clock = clock
        self._inputs = inputs
        self._queue: queue.Queue[Render | None] = queue.Queue()
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._renders: dict[str, Render] = {}
        self.started = 0  # renders actually run (cache hits not counted)
        self._threads = [
            threading.Thread(target=self._work, name="runway-widget-demo-render", daemon=True)
            for _ in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, spec: RenderSpec) -> Render:
        """The render for ``spec``: the cached one, or a new one queued now (failures re-run)."""
        key = spec.key()
        with self._lock:
            existing = self._renders.get(key)
            if existing is not None and (existing.done_at is None or existing.ok):
                return existing
            job = Render(spec, self._out_dir / f"{key}.mp4")
            self._renders[key] = job
            self.started += 1
        if self._cancel.is_set():
            job._finish(_STOPPED, self._clock())
        else:
            self._queue.put(job)
        return job

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._cancel.is_set():
                job._finish(_STOPPED, self._clock())
                continue
            try:
                render(job.spec, job.path, self._inputs, cancel=self._cancel)
            except RenderCancelled:
                job._finish(_STOPPED, self._clock())
            except InputError as exc:
                job._finish(str(exc), self._clock())
            except Exception as exc:
                logger.exception("demo render failed")
                job._finish(f"rendering failed ({type(exc).__name__})", self._clock())
            else:
                job._finish(None, self._clock())

    def shutdown(self) -> None:
        """Stop queued and running renders and join the worker threads."""
        self._cancel.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
