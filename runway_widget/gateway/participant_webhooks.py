"""Participants' own webhooks, honoured by the gateway.

The upstream only ever sees the gateway's webhook (or none); a participant's ``webhook_url``
and ``webhook_secret`` stay here, in memory (a secret is never written to the database), and
each change of their task is POSTed to them as they would see it from ``/fetch``. After a
gateway restart the secrets are gone, so those tasks are followed by polling only.

Changes come from this process's own tracker, dispatcher and clip copies (through
`Workshop.on_change`), and, for a task another process sends or follows, from the ledger
(see ``peer_changes``). Either way a push goes out only when what the participant would see
changes (status, progress, video, message), so a state is pushed once however often and
from wherever it is seen, and the task's last state (failed, or finished with its clip)
ends its target.

Every push follows the outbound rule (``_http.outbound``: the address is checked when the
name is resolved, once per push, and that address is the one connected to), has a deadline,
follows no redirect and reads at most a few bytes of the reply.

Pushes are fair: each participant has a queue of their own, holding the newest state of each
task (a newer one replaces a state not sent yet), and at most one push of theirs is in the
lane at a time. Served in turn, a receiver that never answers holds one worker and delays
only its owner's pushes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._http.deadlines import DeadlinePassed
from .._http.outbound import OutboundPolicy, OutboundRefused, outbound_transport
from .._http.session import ReplyTooLarge
from .._http.transport import TransportError
from .._version import __version__
from .db.database import JobState
from .db.ledger import JobRow
from .lanes import Lane, LaneFull, OwnerQueues
from .workshop import GATEWAY_ENDED, participant_task

__all__ = ["ParticipantWebhooks"]

logger = logging.getLogger("runway_widget.gateway")

PUSH_SECONDS = 5.0  # one push: connect, request, reply
REPLY_LIMIT = 4096  # a receiver's answer is only looked at for its status
WORKERS = 8
OWNER_TASKS = 64  # tasks with a push waiting, per participant
OWNERS = 10_000  # participants with a push in the lane
ENDED = (JobState.FAILED, *GATEWAY_ENDED)  # shown as failed: nothing follows
Shown = tuple[Any, ...]
# what the submission's answer told its owner: a job waiting (or just sent) is not pushed
AS_SUBMITTED: Shown = ("staged", 0, None, None)


@dataclass(frozen=True)
class _Push:
    url: str
    secret: str | None
    body: dict[str, Any]


@dataclass
class _Target:
    url: str
    secret: str | None = field(repr=False)
    shown: Shown = AS_SUBMITTED  # what the participant was last told of the task


class ParticipantWebhooks:
    """Remembers who wants pushes for which task, and sends them fairly, newest state first."""

    def __init__(
        self,
        video_base: Callable[[], str],
        policy: OutboundPolicy,
        *,
        deadline: float = PUSH_SECONDS,
        workers: int = WORKERS,
    ) -> None:
        self._video_base = video_base
        self._policy = policy
        self._deadline = deadline
        self._targets: dict[str, _Target] = {}
        self._queues: OwnerQueues[str, _Push] = OwnerQueues(OWNER_TASKS)
        self._lock = threading.Lock()
        self._lane = Lane("gateway-webhooks", workers, OWNERS)
        self._transport = outbound_transport(
            policy, user_agent=f"runway_widget-gateway/{__version__}", timeout=deadline
        )

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not receive pushes (None if it may); resolves its host name."""
        reason = self._policy.refusal(url)
        return None if reason is None else f"webhook_url {reason}"

    def register(self, task_id: str, url: str, secret: str | None) -> None:
        with self._lock:
            self._targets[task_id] = _Target(url, secret)

    def task_ids(self) -> list[str]:
        """The tasks whose changes are still to be pushed."""
        with self._lock:
            return list(self._targets)

    def deliver(self, row: JobRow) -> None:
        """Queue the participant's view of ``row`` for their webhook, if they asked for one
        and it differs from the view last pushed."""
        with self._lock:
            target = self._targets.get(row.task_id)
            if target is None:
                return
            body = participant_task(row, self._video_base())
            shown = _shown(body)
            if shown == target.shown:
                return
            target.shown = shown
            if row.state in ENDED or (
                row.state == JobState.FINISHED and row.video_path is not None
            ):
                del self._targets[row.task_id]  # the last push for this task
        push = _Push(target.url, target.secret, body)
        start = self._queues.put(row.participant_id, row.task_id, push)
        if start is None:
            logger.warning("participant webhook for task %s dropped", row.task_id)
        elif start:
            self._take_turn(row.participant_id)

    @property
    def waiting(self) -> int:
        """Participants whose next push waits for a free worker."""
        return self._lane.waiting

    def close(self) -> None:
        self._lane.close()
        self._transport.close()

    def _take_turn(self, owner: int) -> None:
        try:
            self._lane.submit(self._send_next, owner)
        except LaneFull as exc:
            dropped = self._queues.drop(owner)
            logger.warning("%d participant webhook push(es) dropped: %s", len(dropped), exc)

    def _send_next(self, owner: int) -> None:
        """Send the owner's oldest waiting push, then queue their next turn (if any)."""
        task_id, push = self._queues.take(owner)
        try:
            self._post(task_id, push)
        finally:
            if self._queues.done(owner):
                self._take_turn(owner)

    def _post(self, task_id: str, push: _Push) -> None:
        headers = {"x-webhook-secret": push.secret} if push.secret else {}
        try:
            self._transport.call(
                "POST",
                push.url,
                policy="once",
                deadline=self._deadline,
                limit=REPLY_LIMIT,
                json=push.body,
                headers=headers,
            )
        except OutboundRefused as exc:  # the name resolves elsewhere now
            logger.warning(
                "participant webhook for task %s not sent: webhook_url %s", task_id, exc.reason
            )
        except (TransportError, DeadlinePassed, ReplyTooLarge) as exc:
            logger.info("participant webhook for task %s failed: %s", task_id, type(exc).__name__)
        except Exception:
            logger.exception("participant webhook for task %s failed", task_id)


def _shown(task: dict[str, Any]) -> Shown:
    """What a push tells: no progress yet is 0 per cent, whether the upstream said so or not."""
    return (task["status"], task["percentage"] or 0, task["video_url"], task.get("message"))
