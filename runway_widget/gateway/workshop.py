"""The room: submissions within quota, one poller for everyone's tasks, answers from state.

Participants' ``/fetch`` calls never reach the upstream. The gateway's one `TaskTracker`
polls all tasks in batches (or takes upstream webhooks), every change is written to the
ledger and kept in memory, and a fetch is answered from there. Another process sharing the
database (PostgreSQL) answers from the ledger for tasks it does not follow itself, and adopts
them if their follower dies (see ``followers``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import ApiframeError, ServerError, SubmissionUnknownError, ValidationError
from ..models import GenerationRequest, Task
from ..tracking.tracker import TaskTracker, TrackHandle
from .clips import ClipStore
from .db.followers import HEARTBEAT_SECONDS, Followers
from .db.ledger import JobRow, Ledger
from .db.roster import Participant
from .upstream import Upstream

__all__ = ["Workshop", "credits_for", "participant_task"]

logger = logging.getLogger("runway_widget.gateway")

DEFAULT_DURATION = 5
RETRY_WRITE_SECONDS = 1.0  # after a failed ledger write (the database restarting, say)
ORPHAN_SECONDS = 120.0  # longer than any submit may take (upstream timeout and its retries)
T = TypeVar("T")
Notify = Callable[[JobRow], None]


class ParticipantHooks(Protocol):
    """Where participants' own webhooks are remembered (see ``participant_webhooks``)."""

    def register(self, task_id: str, url: str, secret: str | None) -> None: ...

    def refusal(self, url: str) -> str | None: ...


def credits_for(request: GenerationRequest) -> int:
    """What a job costs against a credits quota: one credit per second of video."""
    return int(request.duration or DEFAULT_DURATION)


def participant_task(row: JobRow, video_base: str) -> dict[str, Any]:
    """The task as its owner sees it: the gateway's video URL, once the clip is stored here."""
    status, percentage, video_url = row.status or "staged", row.percentage, None
    if row.state == "finished":
        if row.video_path and row.video_key:
            percentage, video_url = 100, f"{video_base}/videos/{row.video_key}.mp4"
        elif not row.upstream_video_url or row.video_path == "":
            percentage, video_url = 100, row.upstream_video_url  # nothing to copy, or it failed
        else:
            status, percentage = "processing", 99  # bringing the clip in
    task: dict[str, Any] = {
        "task_id": row.task_id,
        "task_type": "runway",
        "status": status,
        "percentage": percentage,
        "video_url": video_url,
    }
    if row.message:
        task["message"] = row.message
    return task


class Workshop:
    """Submit, fetch and account for participants; follow every task with one tracker."""

    def __init__(
        self,
        ledger: Ledger,
        upstream: Upstream,
        clips_folder: Path,
        db_executor: Executor,
        *,
        upstream_webhook: tuple[str, str] | None = None,
        min_interval: float = 0.5,
        max_interval: float = 15.0,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.ledger = ledger
        self.followers = Followers(ledger.engine, heartbeat)
        self.upstream = upstream
        self._db = db_executor
        self._rows: dict[str, JobRow] = {}
        self._handles: dict[str, TrackHandle] = {}  # the running tasks this process polls
        self._listeners: list[Notify] = []
        self._upstream_webhook = upstream_webhook
        self.hooks: ParticipantHooks | None = None
        self._pushes = _Pushes()
        # one thread: a task's updates reach the ledger in the order they were seen
        self._updates = ThreadPoolExecutor(1, thread_name_prefix="gateway-updates")
        self._pending: dict[str, Task] = {}
        self._pending_lock = threading.Lock()
        self.tracker = TaskTracker(
            upstream.client,
            webhooks=self._pushes,
            min_interval=min_interval,
            max_interval=max_interval,
        )
        self.clips = ClipStore(clips_folder, upstream.client, upstream.executor, self._clip_stored)

    # -- life ------------------------------------------------------------------------------

    def resume(self) -> int:
        """Register this process and follow the unfinished tasks it claims; returns how many.

        Reservations a killed process left behind become unknown submissions, for the report.
        """
        self._sweep_orphans()
        rows = self.followers.start()
        self._follow(rows)
        if rows:
            logger.info("resumed %d unfinished task(s) from the ledger", len(rows))
        return len(rows)

    def sweep(self) -> None:
        """Beat, adopt a dead process's tasks, look for orphaned reservations (off the loop)."""
        self._db.submit(self._sweep)

    def _sweep(self) -> None:
        try:
            self._sweep_orphans()
            adopted = self.followers.sweep()
            self._follow(adopted)
            if adopted:
                logger.warning("adopted %d task(s) of a stopped gateway process", len(adopted))
            for task_id in self.followers.taken(list(self._handles)):
                logger.warning("task %s is followed by another gateway process now", task_id)
                handle = self._handles.pop(task_id, None)
                if handle is not None:
                    handle.cancel()
                self._rows.pop(task_id, None)
        except Exception:
            logger.exception("the sweep failed; the next one tries again")

    def _follow(self, rows: list[JobRow]) -> None:
        """Poll the running tasks, bring in the finished ones' clips (the same after a start)."""
        for row in rows:
            self._rows[row.task_id] = row
            if row.state == "submitted":
                self._track(row.task_id)
            elif row.upstream_video_url and row.video_key:
                self.clips.fetch_later(row.task_id, row.upstream_video_url, row.video_key)

    def _track(self, task_id: str) -> None:
        self._handles[task_id] = self.tracker.track(task_id, on_update=self._on_update)

    def _sweep_orphans(self) -> None:
        orphans = self.ledger.orphans_to_unknown(ORPHAN_SECONDS)
        if orphans:
            logger.warning("%d submission(s) cut short by a stop are now unknown", orphans)

    def close(self) -> None:
        self.tracker.stop()
        self._updates.shutdown(wait=True)  # every update seen is in the ledger
        try:
            self.followers.leave()
        except Exception:  # the database is gone: peers adopt once the heartbeat is stale
            logger.exception("could not sign this process off; peers adopt its tasks later")

    def on_change(self, listener: Notify) -> None:
        """Call ``listener(row)`` (from a worker thread) whenever a task's state changes."""
        self._listeners.append(listener)

    # -- participants' calls (on the event loop) -------------------------------------------

    async def submit(self, who: Participant, body: dict[str, Any]) -> str:
        """Reserve quota, forward, settle. Raises the client's errors, or `QuotaRefused`."""
        request = GenerationRequest.from_payload(body)
        problems = request.problems()
        if problems:
            raise ValidationError(problems, status_code=400)
        if request.webhook_url and self.hooks is not None:
            loop = asyncio.get_running_loop()  # resolving a name may block: off the loop
            refused = await loop.run_in_executor(None, self.hooks.refusal, request.webhook_url)
            if refused is not None:
                raise ValidationError([refused], status_code=400)
        # One trip to a worker for the whole submission: it runs to its end (the job settled
        # in the ledger) even if the participant hangs up meanwhile.
        return await self.upstream.run(self._submit, who, request)

    def _submit(self, who: Participant, request: GenerationRequest) -> str:
        hook_url, hook_secret = self._upstream_webhook or (None, None)
        forwarded = dataclasses.replace(request, webhook_url=hook_url, webhook_secret=hook_secret)
        job_id = self.ledger.reserve(who.id, credits_for(request), request.public_payload())
        try:
            task_id = self.upstream.client.imagine(forwarded)
        except ServerError as exc:
            (self.ledger.refused if exc.status_code == 503 else self.ledger.unknown)(job_id)
            raise
        except SubmissionUnknownError:
            self.ledger.unknown(job_id)
            raise
        except ApiframeError:
            self.ledger.refused(job_id)
            raise
        except BaseException:
            self.ledger.unknown(job_id)
            raise
        self.ledger.accepted(job_id, task_id, self.followers.id)
        if request.webhook_url and self.hooks is not None:
            self.hooks.register(task_id, request.webhook_url, request.webhook_secret)
        self._rows[task_id] = JobRow(
            who.id, task_id, "submitted", "staged", None, None, None, None, None
        )
        self._track(task_id)
        logger.info("participant %s submitted task %s", who.name, task_id)
        return task_id

    async def task(self, who: Participant, task_id: str) -> JobRow | None:
        """The caller's own task, or None: another's task looks exactly like an unknown one."""
        row = self._rows.get(task_id)
        if row is None:
            row = await self.run_db(self.ledger.job, task_id)
        if row is None or row.participant_id != who.id or row.state not in _VISIBLE:
            return None
        return row

    async def account(self, who: Participant) -> dict[str, Any]:
        row = await self.run_db(self.ledger.account, who.id)
        if row is None:
            return {"email": who.name, "credits": 0, "total_images": 0, "plan": "workshop"}
        return {
            "email": who.name,
            "credits": _left(row["credits_limit"], row["credits_used"]),
            "total_images": row["jobs_used"],
            "plan": "workshop",
            "jobs_left": _left(row["jobs_limit"], row["jobs_used"]),
            "running": row["running"],
        }

    # -- updates (on the poller thread, or a pushed webhook) -------------------------------

    def push(self, task: Task) -> None:
        """An update the upstream pushed to the gateway's webhook."""
        self._pushes.publish(task)

    def _on_update(self, task: Task) -> None:
        """From the poller: queue the write, so the tracker's locks are never held through a
        database commit (the event loop takes them to track new tasks). Updates that arrive
        while a write runs go into the next one together: one commit for a whole poll."""
        self._queue_update(task, replace=True)

    def _queue_update(self, task: Task, *, replace: bool) -> None:
        with self._pending_lock:
            first = not self._pending
            if replace or task.task_id not in self._pending:
                self._pending[task.task_id] = task  # a newer state replaces one not written
        if first:
            self._updates.submit(self._record_pending)

    def _record_pending(self) -> None:
        with self._pending_lock:
            tasks, self._pending = list(self._pending.values()), {}
        try:
            self.ledger.update_tasks(tasks)
        except Exception:
            logger.exception("could not record %d task update(s); retrying", len(tasks))
            time.sleep(RETRY_WRITE_SECONDS)
            for task in tasks:
                self._queue_update(task, replace=False)
            return
        for row in self.ledger.jobs(task.task_id for task in tasks):
            if row.state != "submitted":
                self._handles.pop(row.task_id, None)  # ended: the tracker let it go
            self._changed(row)
            if row.state == "finished" and row.video_key and row.upstream_video_url:
                self.clips.fetch_later(row.task_id, row.upstream_video_url, row.video_key)

    def _clip_stored(self, task_id: str, path: Path | None) -> None:
        self.ledger.video_stored(task_id, str(path) if path is not None else "")
        row = self.ledger.job(task_id)
        if row is not None:
            self._changed(row)

    def _changed(self, row: JobRow) -> None:
        self._rows[row.task_id] = row
        for listener in self._listeners:
            try:
                listener(row)
            except Exception:
                logger.exception("a listener failed on task %s", row.task_id)

    async def run_db(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call in the database pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._db, call, *args)


_VISIBLE = ("submitted", "finished", "failed")


class _Pushes:
    """The receiver shape `TaskTracker.listen` takes, fed by the upstream webhook route."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Task], object]] = []

    def subscribe(self, callback: Callable[[Task], object]) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def publish(self, task: Task) -> None:
        for callback in list(self._callbacks):
            callback(task)


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(0, limit - used)
