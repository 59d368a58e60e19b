"""Participants' own webhooks, honoured by the gateway.

The upstream only ever sees the gateway's webhook (or none); a participant's ``webhook_url``
and ``webhook_secret`` stay here, in memory (a secret is never written to the database), and
each change of their task is POSTed to them as they would see it from ``/fetch``. After a
gateway restart the secrets are gone, so those tasks are followed by polling only.

Targets inside the gateway's own network are refused (see ``webhook_targets``) unless the
instructor allowed them; each send is checked again, has an overall deadline, follows no
redirect and reads at most a few bytes of the reply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from .._http.deadlines import DeadlinePassed
from .._http.transport import ReplyTooLarge, Transport
from .._version import __version__
from .db.ledger import JobRow
from .webhook_targets import refusal
from .workshop import participant_task

__all__ = ["ParticipantWebhooks"]

logger = logging.getLogger("runway_widget.gateway")

TIMEOUT = 10.0  # the whole send: connect, request, reply
REPLY_LIMIT = 4096  # a receiver's answer is only looked at for its status
WORKERS = 2


class ParticipantWebhooks:
    """Remembers who wants pushes for which task, and sends them from a small pool."""

    def __init__(self, video_base: Callable[[], str], *, allow_private: bool = False) -> None:
        self._video_base = video_base
        self._allow_private = allow_private
        self._targets: dict[str, tuple[str, str | None]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="gateway-webhooks")
        self._transport = Transport(
            user_agent=f"runway_widget-gateway/{__version__}",
            timeout=TIMEOUT,
            max_retries=0,
            backoff_factor=0.0,
            backoff_max=0.0,
        )

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not receive pushes (None if it may); resolves its host name."""
        return None if self._allow_private else refusal(url)

    def register(self, task_id: str, url: str, secret: str | None) -> None:
        with self._lock:
            self._targets[task_id] = (url, secret)

    def deliver(self, row: JobRow) -> None:
        """Send the participant's view of ``row`` to their webhook, if they asked for one."""
        with self._lock:
            target = self._targets.get(row.task_id)
            if (
                target is not None
                and row.state in ("failed", "finished")
                and (row.state == "failed" or row.video_path is not None)
            ):
                del self._targets[row.task_id]  # the last push for this task
        if target is not None:
            self._pool.submit(self._post, target, participant_task(row, self._video_base()))

    def _post(self, target: tuple[str, str | None], body: dict[str, Any]) -> None:
        url, secret = target
        task_id = body["task_id"]
        refused = self.refusal(url)  # again: the name may resolve elsewhere by now
        if refused is not None:
            logger.warning("participant webhook for task %s not sent: %s", task_id, refused)
            return
        headers = {"x-webhook-secret": secret} if secret else {}
        try:
            self._transport.call(
                "POST",
                url,
                policy="once",
                deadline=TIMEOUT,
                limit=REPLY_LIMIT,
                json=body,
                headers=headers,
            )
        except (requests.RequestException, DeadlinePassed, ReplyTooLarge) as exc:
            logger.info("participant webhook for task %s failed: %s", task_id, type(exc).__name__)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._transport.close()
