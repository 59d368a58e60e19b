"""Webhook calls from the demo backend, as the real service makes them.

Each task with a ``webhook_url`` gets one daemon thread that watches its state and POSTs the
task JSON (header ``x-webhook-secret``) on every status change, every 10 % step and the final
result, in order. A failed delivery is retried a few times with backoff; if it still fails the
update is dropped and logged: a webhook never breaks the task. While a delivery is being retried
the steps it overtakes are folded into the next call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from .timeline import DemoTask

logger = logging.getLogger("runway_widget.demo")

Snapshot = Callable[[DemoTask, float], dict[str, Any]]

MAX_SLEEP = 0.25  # bounds how late an unforeseen change (a failed render) is sent
ATTEMPTS = 4
BACKOFF_SECONDS = 0.25
TIMEOUT = (3.0, 10.0)
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _milestone(data: dict[str, Any]) -> tuple[str, int]:
    """What makes an update worth a call: the status, and the 10 % step while processing."""
    status = str(data.get("status"))
    if status != "processing":
        return status, 0
    try:
        return status, int(data.get("percentage") or 0) // 10
    except ValueError:
        return status, 0


class WebhookSender:
    """Runs one delivery thread per task that has a webhook; `stop` ends and joins them all."""

    def __init__(self, snapshot: Snapshot, clock: Callable[[], float] = time.time) -> None:
        self._snapshot = snapshot
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self.delivered = 0
        self.failed = 0

    def watch(self, task: DemoTask) -> None:
        """Start following ``task`` (which has a webhook_url) until its final result is sent."""
        first = self._snapshot(task, self._clock())  # taken now, so the first call is "staged"
        thread = threading.Thread(
            target=self._follow,
            args=(task, first),
            name="runway-widget-demo-webhook",
            daemon=True,
        )
        with self._lock:
            if self._stop.is_set():
                return
            self._threads.add(thread)
            thread.start()

    def stop(self) -> None:
        """Stop every delivery thread (an in-flight POST may take up to its timeout)."""
        with self._lock:
            self._stop.set()
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def _follow(self, task: DemoTask, first: dict[str, Any]) -> None:
        try:
            sent: tuple[str, int] | None = None
            data = first
            while not self._stop.is_set():
                milestone = _milestone(data)
                if milestone != sent:
                    self._deliver(task, data)
                    sent = milestone
                if data.get("status") in ("finished", "failed"):
                    return
                self._sleep_until_change(task)
                data = self._snapshot(task, self._clock())
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _sleep_until_change(self, task: DemoTask) -> None:
        """Sleep to the next milestone, or until the render is done; never over MAX_SLEEP."""
        due = task.next_change(self._clock())
        if due is not None:
            # A hair past the mark, so the percentage computed then has surely moved on.
            self._stop.wait(min(MAX_SLEEP, max(0.0, due - self._clock()) + 0.002))
        elif task.render is not None and task.render.done_at is None:
            task.render.wait(MAX_SLEEP)
        else:
            self._stop.wait(MAX_SLEEP)

    def _deliver(self, task: DemoTask, data: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json"}
        if task.webhook_secret:
            headers["x-webhook-secret"] = task.webhook_secret
        for attempt in range(ATTEMPTS):
            if attempt and self._stop.wait(BACKOFF_SECONDS * 2 ** (attempt - 1)):
                return
            try:
                response = requests.post(
                    str(task.webhook_url), json=data, headers=headers, timeout=TIMEOUT
                )
            except requests.RequestException as exc:
                reason = type(exc).__name__
            else:
                response.close()
                if response.status_code < 300:
                    with self._lock:
                        self.delivered += 1
                    return
                reason = f"HTTP {response.status_code}"
                if response.status_code not in _RETRY_STATUSES:
                    break
            logger.debug(
                "webhook for task %s: attempt %d failed (%s)", task.task_id, attempt + 1, reason
            )
        with self._lock:
            self.failed += 1
        logger.warning(
            "webhook for task %s: update %r dropped after retries", task.task_id, data.get("status")
        )
