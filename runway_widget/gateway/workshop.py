"""The room: submissions within quota, one poller for everyone's tasks, answers from state.

Submissions are reserved and queued by `Submissions` (see ``submissions``): a job waits
in the ledger's queue until the upstream has a slot; meanwhile its owner sees it ``staged``
with its ``queue_position`` (1 is next).

Participants' ``/fetch`` calls never reach the upstream. The gateway's one `TaskTracker`
polls all tasks in batches (or takes upstream webhooks), every change is written to the
ledger and kept in memory, and a fetch is answered from there. Another process sharing the
database (PostgreSQL) answers from the ledger for tasks it does not follow itself, and adopts
them if their follower dies (see ``followers``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .._http.outbound import OutboundPolicy
from ..models import Task, is_http_url
from ..tracking.tracker import TaskTracker
from .clips import ClipStore
from .db.database import JobState
from .db.followers import HEARTBEAT_SECONDS, Followers
from .db.ledger import JobRow, Ledger, raw_job_reader
from .db.raw_statements import RawStatements
from .db.roster import Participant
from .followed import FollowedTasks
from .metrics import Meter, MeteredSource
from .submissions import Submissions
from .task_updates import TaskUpdates
from .upstream import Upstream

__all__ = ["Workshop", "participant_task"]

logger = logging.getLogger("runway_widget.gateway")

ORPHAN_SECONDS = 120.0  # longer than any submit may take (upstream timeout and its retries)
WAITING = (JobState.QUEUED, JobState.SENDING)
GATEWAY_ENDED = (JobState.REFUSED, JobState.UNKNOWN, JobState.CANCELLED)  # never ran upstream
T = TypeVar("T")
Notify = Callable[[JobRow], None]


def participant_task(
    row: JobRow, video_base: str, queue_position: int | None = None
) -> dict[str, Any]:
    """The task as its owner sees it: ``staged`` with its place while it waits in the queue,
    failed with the reason when the gateway ended it, the gateway's video URL once the clip
    is stored here."""
    status, percentage, video_url = row.status or "staged", row.percentage, None
    if row.state in WAITING:
        status, percentage = "staged", 0
    elif row.state in GATEWAY_ENDED:
        status = "failed"
    elif row.state == JobState.FINISHED:
        if row.video_path and row.video_key:
            percentage, video_url = 100, f"{video_base}/videos/{row.video_key}.mp4"
        elif not row.upstream_video_url or row.video_path == "":
            percentage = 100  # nothing to copy, or it failed: theirs, if it is a web address
            video_url = row.upstream_video_url if is_http_url(row.upstream_video_url) else None
        else:
            status, percentage = "processing", 99  # bringing the clip in
    task: dict[str, Any] = {
        "task_id": row.task_id,
        "task_type": "runway",
        "status": status,
        "percentage": percentage,
        "video_url": video_url,
    }
    if row.state == JobState.QUEUED and queue_position is not None:
        task["queue_position"] = queue_position
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
        outbound: OutboundPolicy | None = None,
        min_interval: float = 0.5,
        max_interval: float = 15.0,
        heartbeat: float = HEARTBEAT_SECONDS,
        meter: Meter | None = None,
        reads: RawStatements | None = None,
        queue: bool = True,
    ) -> None:
        self.ledger = ledger
        # fetches of tasks another process follows read the ledger: cheaply, when it can
        self._read_job = raw_job_reader(reads) if reads is not None else ledger.job
        self.meter = meter or Meter()
        self.followers = Followers(ledger.engine, heartbeat, ledger.clock)
        self.upstream = upstream
        self._db = db_executor
        self.submissions = Submissions(
            ledger,
            upstream,
            self.followers.id,
            self._sent,
            self.run_db,
            queue=queue,
            upstream_webhook=upstream_webhook,
            meter=self.meter,
        )
        self._tasks = FollowedTasks()
        self._closing = threading.Lock()  # a task is followed before the stop, or never
        self._closed = False
        self._listeners: list[Notify] = []
        self._pushes = _Pushes()
        # pushes are journalled and delivered here, in the order they came, off the event loop
        self._push_thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-pushes")
        self._updates = TaskUpdates(ledger, self._recorded)
        self._source = MeteredSource(upstream.client, self.meter)
        self.tracker = TaskTracker(
            self._source,
            webhooks=self._pushes,
            min_interval=min_interval,
            max_interval=max_interval,
        )
        client = upstream.client
        self.clips = ClipStore(
            clips_folder,
            (outbound or OutboundPolicy()).trusting(client.base_url),
            self._clip_stored,
            limit=client.download_limit,
            base_seconds=client.timeout,
            min_rate=client.download_min_rate,
            meter=self.meter,
        )

    # -- life ------------------------------------------------------------------------------

    def resume(self) -> int:
        """Register this process and follow the unfinished tasks it claims; returns how many.

        Jobs a killed process was sending become unknown submissions, for the report; the
        queue is taken up where it stood.
        """
        self._sweep_orphans()
        rows = self.followers.start()
        alone = self.ledger.engine.dialect.name == "sqlite"  # one process per database file
        self.submissions.end_lost_sends(None if alone else self.followers.stale_seconds)
        self._follow(rows)
        if rows:
            logger.info("resumed %d unfinished task(s) from the ledger", len(rows))
        self.submissions.start()
        return len(rows)

    def sweep(self) -> None:
        """Beat, adopt a dead process's tasks, look for orphaned reservations (off the loop)."""
        self._db.submit(self._sweep)

    def _sweep(self) -> None:
        try:
            self._sweep_orphans()
            self.submissions.end_lost_sends(self.followers.stale_seconds)
            adopted = self.followers.sweep()
            self._follow(adopted)
            if adopted:
                logger.warning("adopted %d task(s) of a stopped gateway process", len(adopted))
            for task_id in self.followers.taken(self._tasks.polled()):
                logger.warning("task %s is followed by another gateway process now", task_id)
                handle = self._tasks.hand_over(task_id)
                if handle is not None:
                    handle.cancel()
        except Exception:
            logger.exception("the sweep failed; the next one tries again")

    def _follow(self, rows: list[JobRow]) -> None:
        """Poll the running tasks, bring in the finished ones' clips (the same after a start)."""
        for row in rows:
            self._tasks.adopt(row)
            if row.state == JobState.SUBMITTED:
                self._track(row)
            elif row.upstream_video_url and row.video_key:
                self.clips.fetch_later(
                    row.task_id, row.upstream_video_url, row.video_key, owner=row.participant_id
                )

    def _track(self, row: JobRow) -> None:
        """Poll the upstream for the task (by the upstream's id for it); once closing, leave
        it to the ledger (the next start resumes it): a send answered during the stop must
        not start a poller that outlives the gateway."""
        upstream_id = row.upstream_task_id or row.task_id
        with self._closing:
            if self._closed:
                return
            self._source.following(upstream_id)
            handle = self.tracker.track(upstream_id, on_update=self._on_update)
        if not self._tasks.poll(row.task_id, handle):  # it ended (or went elsewhere) meanwhile
            handle.cancel()

    def _sweep_orphans(self) -> None:
        orphans = self.ledger.orphans_to_unknown(ORPHAN_SECONDS)
        if orphans:
            logger.warning("%d submission(s) cut short by a stop are now unknown", orphans)

    def close(self) -> None:
        with self._closing:
            self._closed = True
        self.submissions.close()
        self.clips.close()
        self._push_thread.shutdown(wait=True)
        self.tracker.stop()
        self._updates.close()  # every update seen is in the ledger
        try:
            self.followers.leave()
        except Exception:  # the database is gone: peers adopt once the heartbeat is stale
            logger.exception("could not sign this process off; peers adopt its tasks later")

    def poll_lag(self) -> float:
        """Seconds the task this process has left longest without a poll has waited."""
        return self._source.lag(self._tasks.polled())

    def followed_elsewhere(self, task_ids: Iterable[str]) -> list[str]:
        """Of ``task_ids``, those this process neither follows nor moved itself (waiting in
        the queue, or sent by another process): their changes are only in the ledger."""
        return self._tasks.unknown(task_ids)

    def on_change(self, listener: Notify) -> None:
        """Call ``listener(row)`` (from a worker thread) whenever a task's state changes."""
        self._listeners.append(listener)

    # -- participants' calls (on the event loop) -------------------------------------------

    def _sent(self, row: JobRow) -> None:
        """A queued job's answer is recorded: follow it, or tell its owner how it ended."""
        if row.state == JobState.SUBMITTED:
            self._tasks.remember(row)
            self._track(row)
        else:
            self._changed(row)

    async def task(self, who: Participant, task_id: str) -> JobRow | None:
        """The caller's own task, or None: another's task looks exactly like an unknown one."""
        row = self._tasks.row(task_id)
        if row is None:
            row = await self.run_db(self._read_job, task_id)
        return row if _visible(row, who) else None

    async def tasks(self, who: Participant, task_ids: Sequence[str]) -> list[JobRow]:
        """The caller's own tasks among ``task_ids``, in that order, once each: those known
        here from memory, the others in one read of the ledger."""
        wanted = list(dict.fromkeys(task_ids))
        found = {task_id: self._tasks.row(task_id) for task_id in wanted}
        missing = [task_id for task_id, row in found.items() if row is None]
        if missing:
            found.update((row.task_id, row) for row in await self.run_db(self.ledger.jobs, missing))
        return [row for row in map(found.get, wanted) if row is not None and _visible(row, who)]

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
            "running": max(0, row["running"] - row["queued"]),
            "queued": row["queued"],
        }

    # -- updates (on the poller thread, or a pushed webhook) -------------------------------

    def push(self, task: Task) -> None:
        """An update the upstream pushed to the gateway's webhook (delivered off the loop)."""
        self._push_thread.submit(self._pushes.publish, task)

    def _on_update(self, task: Task) -> None:
        """From the poller: queued for the updates thread (see ``task_updates``)."""
        self._updates.queue(task)

    def _recorded(self, rows: list[JobRow]) -> None:
        """After a write: the rows as the ledger has them now; bring in finished clips; a
        job that ended frees a slot upstream for the queue."""
        if any(row.state != JobState.SUBMITTED for row in rows):
            self.submissions.dispatcher.poke()
        for row in rows:
            self._changed(row)
            if row.state == JobState.FINISHED and row.video_key and row.upstream_video_url:
                self.clips.fetch_later(
                    row.task_id, row.upstream_video_url, row.video_key, owner=row.participant_id
                )

    def _clip_stored(self, task_id: str, path: Path | None) -> None:
        self.ledger.video_stored(task_id, str(path) if path is not None else "")
        row = self.ledger.job(task_id)
        if row is not None:
            self._changed(row)

    def _changed(self, row: JobRow) -> None:
        ended = self._tasks.remember(row)
        if ended is not None:
            ended.cancel()  # the ledger ended it: poll it no more
        for listener in self._listeners:
            try:
                listener(row)
            except Exception:
                logger.exception("a listener failed on task %s", row.task_id)

    async def run_db(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call in the database pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._db, call, *args)


def _visible(row: JobRow | None, who: Participant) -> bool:
    """The caller's own task (an earlier version's reservations had no id to ask for)."""
    return row is not None and row.participant_id == who.id and row.state != JobState.RESERVED


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
