"""A participant's submissions: checked, reserved, queued, and withdrawn while they wait.

A submission is answered as soon as its quota is reserved (`Reservations`: those that
arrive together share one commit). The job then waits in the ledger's queue (``db.queue``)
until the upstream has a slot, and this process's `Dispatcher` sends it, in the queue's own
time. Its owner knows it by the gateway's task id from the first answer on; while it waits,
a fetch says ``staged`` with its place in line (`Submissions.places`), and
``DELETE /task/<id>`` withdraws it and gives its quota back (`Submissions.cancel`).

Without the queue (``queue=False``), each submission is sent at once, in its own request, by
the client that retries what the upstream certainly did not take; any answer but acceptance
is refused to the participant as the upstream gave it, as before the queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from .._terminal import inert
from ..errors import SubmissionUnknownError, ValidationError
from ..models import GenerationRequest
from .db.database import JobState
from .db.ledger import JobRow, Ledger, Wanted
from .db.queue import JobQueue, QueuedJob
from .db.roster import Participant
from .dispatcher import Dispatcher, Outcome, Settled
from .metrics import Meter
from .reservations import Reservations
from .upstream import Upstream

__all__ = [
    "ParticipantHooks",
    "Submissions",
    "WebhookTargetRefused",
    "credits_for",
    "with_room_defaults",
]

logger = logging.getLogger("runway_widget.gateway")

DEFAULT_DURATION = 5
# What a job leaves out gets the panel's choices, so every clip is made, charged and labelled
# alike whichever client sent it (the CLI sends only what it was given).
DEFAULT_MODEL = "gen3a_turbo"
DEFAULT_ASPECT_RATIO = "16:9"
RunDb = Callable[..., Awaitable[Any]]


class WebhookTargetRefused(ValidationError):
    """A participant's ``webhook_url`` goes where the gateway does not post (see SPEC §8)."""


class ParticipantHooks(Protocol):
    """Where participants' own webhooks are remembered (see ``participant_webhooks``)."""

    def register(self, task_id: str, url: str, secret: str | None) -> None: ...

    def refusal(self, url: str) -> str | None: ...


def with_room_defaults(request: GenerationRequest) -> GenerationRequest:
    """``request`` with the settings it left out set as the panel sets them."""
    return dataclasses.replace(
        request,
        model=request.model or DEFAULT_MODEL,
        duration=request.duration or DEFAULT_DURATION,
        aspect_ratio=request.aspect_ratio
        or (DEFAULT_ASPECT_RATIO if request.generation_type == "text2video" else None),
    )


def credits_for(request: GenerationRequest) -> int:
    """What a job costs against a credits quota: one credit per second of video."""
    return int(request.duration or DEFAULT_DURATION)


class Submissions:
    """Submit, cancel and place participants' jobs; ``settled(row)`` after each answer."""

    def __init__(
        self,
        ledger: Ledger,
        upstream: Upstream,
        sender: str,
        settled: Settled,
        run_db: RunDb,
        *,
        queue: bool = True,
        upstream_webhook: tuple[str, str] | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.ledger = ledger
        self.queue = JobQueue(ledger.engine, ledger.clock)
        self.queueing = queue
        self.reservations = Reservations(ledger)
        self.dispatcher = Dispatcher(
            self.queue,
            ledger,
            upstream,
            sender,
            settled,
            upstream_webhook=upstream_webhook,
            meter=meter,
            arriving=lambda: self.reservations.busy,
        )
        self.hooks: ParticipantHooks | None = None
        self._upstream = upstream
        self._sender = sender
        self._settled = settled
        self._run_db = run_db

    def start(self) -> None:
        if self.queueing:
            self.dispatcher.start()

    def end_lost_sends(self, stale_seconds: float | None) -> None:
        """Jobs a stopped process was sending are unknown now (see `JobQueue.lost_sends`)."""
        lost = self.queue.lost_sends(stale_seconds)
        if lost:
            logger.warning("%d job(s) cut short while being sent are now unknown", lost)

    def close(self) -> None:
        self.reservations.close()
        self.dispatcher.close()

    async def submit(self, who: Participant, body: dict[str, Any]) -> str:
        """Reserve quota and queue the job; returns the task id its owner knows it by.
        Raises `ValidationError`, `QuotaRefused`; without the queue, the client's errors."""
        request = GenerationRequest.from_payload(body)
        problems = request.problems()
        if problems:
            raise ValidationError(problems, status_code=400)
        request = with_room_defaults(request)
        if request.webhook_url and self.hooks is not None:
            loop = asyncio.get_running_loop()  # resolving a name may block: off the loop
            refused = await loop.run_in_executor(None, self.hooks.refusal, request.webhook_url)
            if refused is not None:
                raise WebhookTargetRefused([refused], status_code=400)
        wanted = Wanted(who.id, credits_for(request), request.public_payload())
        if self.queueing:
            reserved = await self.reservations.reserve(wanted)
            self.dispatcher.poke()
            task_id = reserved.task_id
        else:
            # one trip to a worker for the whole submission: it runs to its end (the job
            # settled in the ledger) even if the participant hangs up meanwhile
            task_id = await self._upstream.run(self._submit_now, wanted)
        if request.webhook_url and self.hooks is not None:
            self.hooks.register(task_id, request.webhook_url, request.webhook_secret)
        logger.info("participant %s submitted task %s", inert(who.name), task_id)
        return task_id

    def _submit_now(self, wanted: Wanted) -> str:
        """Without the queue: reserve, send, settle; any answer but acceptance is raised."""
        reserved = self.ledger.reserve(
            wanted.participant_id, wanted.credits, wanted.request, sender=self._sender
        )
        job = QueuedJob(
            reserved.job_id,
            wanted.participant_id,
            reserved.task_id,
            wanted.request,
            self.ledger.clock(),
        )
        sent = self.dispatcher.send(job, self._upstream.client)
        row = self.dispatcher.record(job, sent)
        if row is not None:
            self._settled(row)
        if sent.outcome is not Outcome.ACCEPTED:
            raise sent.error or SubmissionUnknownError(sent.message)
        return reserved.task_id

    async def cancel(self, who: Participant, task_id: str) -> JobRow | None:
        """Withdraw the caller's queued job (its quota is free again); returns the job as it
        is now (another state: it had left the queue), or None (not theirs, not known)."""
        row: JobRow | None = await self._run_db(self.ledger.cancel, who.id, task_id)
        if row is not None and row.state == JobState.CANCELLED:
            self._settled(row)
            self.dispatcher.snapshot = await self._run_db(self.queue.snapshot)  # all move up
        return row

    async def places(self, rows: Sequence[JobRow]) -> dict[str, int]:
        """Where each waiting job of ``rows`` stands in the queue (1 is next): as the queue
        was last read (at most half a second ago), read again for a job newer than that."""
        waiting = [row.task_id for row in rows if row.state == JobState.QUEUED]
        snapshot = self.dispatcher.snapshot
        if any(task_id not in snapshot.positions for task_id in waiting):
            snapshot = await self._run_db(self.queue.snapshot)
            self.dispatcher.snapshot = snapshot
        return {t: snapshot.positions[t] for t in waiting if t in snapshot.positions}
