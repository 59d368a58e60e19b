"""Sending queued jobs upstream, in the queue's own time, and judging what came back.

A submission's answer needs only its reservation (see ``workshop``): the job is queued, and
this process's `Dispatcher` sends it when the upstream has a slot. One thread claims jobs
(`JobQueue.claim`: the fair order, the shared limit, a pause) whenever something may have
changed (a job queued or ended here, an answer came back) and at least every `POLL_SECONDS`
(another process's jobs may have ended); each claimed job is sent in the upstream lane by a
client that never retries a submission itself, so every "busy" answer reaches the queue,
which learns from it and keeps the job's place. `judge` says what an answer means:

- **accepted**: followed by this process until it ends;
- **busy** (429, or a 400/403 saying too many jobs run): back to its place, the limit
  learned, everyone paused for the ``Retry-After``;
- **unreachable** (503, a connection that never opened): back to its place, paused;
- **refused** (any other answer): the task fails with the upstream's reason and the
  quota is given back, as a refusal did before the queue;
- **unknown** (no answer: a timeout, a dropped connection, a 5xx, a reply not understood):
  the task fails, its quota stays reserved for the report, and it is never sent again.

The same send serves a gateway started without the queue (``--no-queue``): there a job is
sent at once, in the submission's own request, and any outcome but acceptance is refused
to the participant as the upstream gave it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .._http.replies import error_messages
from ..client.apiframe import ApiframeClient
from ..errors import (
    ApiframeError,
    ApiStatusError,
    AuthenticationError,
    NetworkError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    ValidationError,
    shorten,
)
from .db.ledger import JobRow, Ledger
from .db.queue import Claim, JobQueue, QueuedJob, QueueSnapshot
from .db.upstream_text import storable_id
from .lanes import LaneFull
from .metrics import Meter
from .upstream import Upstream

__all__ = ["Dispatcher", "Outcome", "Sent", "Settled", "judge"]

logger = logging.getLogger("runway_widget.gateway")

POLL_SECONDS = 1.0  # the longest a free slot waits for a job another process queued
ROUND_SECONDS = 0.02  # wake-ups closer than this are taken together
SNAPSHOT_SECONDS = 0.5  # how stale the positions participants see may be
YIELD_ROUNDS = 20  # a claim waits at most this many quarter rounds for submissions coming in
CLOSE_SECONDS = 5.0
UNKNOWN_OUTCOME = (
    "the upstream did not answer the submission: it may or may not have been created. "
    "It is recorded for the instructor; do not resubmit it"
)
UNUSABLE_TASK_ID = "the upstream answered with a task id the gateway cannot store or follow"
KEY_REFUSED = "the gateway's upstream key was refused: tell the instructor"
UNTOUCHED = "; nothing was submitted and your quota is untouched"
_TOO_MANY = re.compile(
    r"\btoo many\b.*\b(jobs?|tasks?|generations?|requests?)\b"
    r"|\bconcurren(t|cy)\b.*\b(limit|jobs?|tasks?)\b",
    re.IGNORECASE,
)


class Outcome(str, enum.Enum):
    ACCEPTED = "accepted"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Sent:
    """What one submission came to: the upstream's id, or why not (``error`` as raised)."""

    outcome: Outcome
    upstream_task_id: str | None = None
    error: BaseException | None = None
    retry_after: float | None = None
    message: str = ""


def judge(exc: BaseException) -> Sent:
    """What a failed submission means for the job (see the module docstring)."""
    if isinstance(exc, RateLimitError) or _says_too_many(exc):
        return Sent(Outcome.BUSY, error=exc, retry_after=getattr(exc, "retry_after", None))
    if isinstance(exc, NetworkError) or (isinstance(exc, ServerError) and exc.status_code == 503):
        return Sent(Outcome.UNREACHABLE, error=exc, retry_after=getattr(exc, "retry_after", None))
    if isinstance(exc, (SubmissionUnknownError, ServerError)) or not isinstance(exc, ApiframeError):
        return Sent(Outcome.UNKNOWN, error=exc, message=UNKNOWN_OUTCOME)
    if isinstance(exc, AuthenticationError):
        return Sent(Outcome.REFUSED, error=exc, message=KEY_REFUSED + UNTOUCHED)
    if isinstance(exc, ValidationError):
        reason = "; ".join(exc.problems) or "no reason given"
    else:
        reason = exc.detail  # its advice is for the gateway's own terminal
    return Sent(Outcome.REFUSED, error=exc, message=f"the upstream refused: {reason}{UNTOUCHED}")


def _says_too_many(exc: BaseException) -> bool:
    """A 400 or 403 whose message says too many jobs are running (a concurrency limit)."""
    if not isinstance(exc, ApiStatusError) or exc.status_code not in (400, 403):
        return False
    messages = error_messages(exc.body) or [exc.message]
    return any(_TOO_MANY.search(message) for message in messages)


Settled = Callable[[JobRow], None]


class Dispatcher:
    """This process's sender of queued jobs; ``settled(row)`` after each answer that ends
    a job's sending (accepted, refused, unknown)."""

    def __init__(
        self,
        queue: JobQueue,
        ledger: Ledger,
        upstream: Upstream,
        sender: str,
        settled: Settled,
        *,
        upstream_webhook: tuple[str, str] | None = None,
        meter: Meter | None = None,
        arriving: Callable[[], bool] = lambda: False,
    ) -> None:
        self.queue = queue
        self.meter = meter or Meter()
        self.ledger = ledger
        self.upstream = upstream
        self.sender = sender
        self._settled = settled
        self._hook = upstream_webhook or (None, None)
        self._arriving = arriving
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._claimed: dict[int, QueuedJob] = {}  # in the lane, not sent yet
        self._snapshot = QueueSnapshot()
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gateway-dispatcher", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Something changed (a job queued or ended): look at the queue soon."""
        self._wake.set()

    def close(self) -> None:
        """Stop claiming; jobs claimed but not sent yet go back to their places."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(CLOSE_SECONDS)
        with self._lock:
            unsent, self._claimed = list(self._claimed.values()), {}
        if unsent:
            try:
                self.queue.unsent(unsent)
            except Exception:  # the database is gone: the next start takes them for lost
                logger.exception("could not put %d claimed job(s) back in the queue", len(unsent))

    @property
    def snapshot(self) -> QueueSnapshot:
        """The queue's order as last read (at most `SNAPSHOT_SECONDS` old while it moves)."""
        return self._snapshot

    @snapshot.setter
    def snapshot(self, snapshot: QueueSnapshot) -> None:
        """A newer reading of the queue (taken to answer a participant)."""
        if snapshot.taken >= self._snapshot.taken:
            self._snapshot = snapshot

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._let_submissions_in()
            wait = POLL_SECONDS
            try:
                claim = self.queue.claim(self.sender)
                self._hand_out(claim)
                if claim.wait is not None:
                    wait = min(wait, claim.wait)
                if claim.jobs or self.queue.clock() - self._snapshot.taken >= SNAPSHOT_SECONDS:
                    self._snapshot = self.queue.snapshot()
                if self._snapshot.length:  # people wait: their places are read again soon
                    wait = min(wait, SNAPSHOT_SECONDS)
            except Exception:
                logger.exception("the queue could not be read; trying again shortly")
            self._wake.wait(wait)
            self._stop.wait(ROUND_SECONDS)

    def _let_submissions_in(self) -> None:
        """While a room's submissions are being reserved, claims and readings of the queue
        wait (briefly: at most `YIELD_ROUNDS` quarter rounds): run beside them, they would
        take the interpreter and the database's write lock from the answers people await.
        The jobs go upstream a few milliseconds later, all in one claim."""
        for _ in range(YIELD_ROUNDS):
            if not self._arriving() or self._stop.wait(ROUND_SECONDS / 4):
                return

    def _hand_out(self, claim: Claim) -> None:
        for index, job in enumerate(claim.jobs):
            with self._lock:
                self._claimed[job.job_id] = job
            try:
                self.upstream.submit(self._send_claimed, job)
            except LaneFull:
                unsent = claim.jobs[index:]
                with self._lock:
                    for left in unsent:
                        self._claimed.pop(left.job_id, None)
                self.queue.unsent(unsent)
                return

    def _send_claimed(self, job: QueuedJob) -> None:
        with self._lock:
            if self._claimed.pop(job.job_id, None) is None:
                return  # put back when this process began to stop
        try:
            self._settle(job, self.send(job))
        except Exception:
            logger.exception("job %d: recording the upstream's answer failed", job.job_id)
        finally:
            self.poke()

    # -- one submission --------------------------------------------------------------------

    def send(self, job: QueuedJob, client: ApiframeClient | None = None) -> Sent:
        """Submit ``job`` upstream (the gateway's own webhook in place of the participant's)
        and say what came of it. ``client``: the queue's, which never retries, unless
        another is given. Never raises but what cannot be caught."""
        hook_url, hook_secret = self._hook
        request = dataclasses.replace(job.request, webhook_url=hook_url, webhook_secret=hook_secret)
        try:
            with self.meter.upstream("submit"):
                task_id = (client or self.upstream.submitter).imagine(request)
        except Exception as exc:
            sent = judge(exc)
            if sent.outcome is Outcome.UNKNOWN and not isinstance(exc, ApiframeError):
                logger.exception("the submission of job %d ended unexpectedly", job.job_id)
            return sent
        except BaseException:
            self.ledger.unknown(job.job_id, UNKNOWN_OUTCOME)
            raise
        if not storable_id(task_id):  # taken upstream, maybe paid, but it cannot be followed
            message = f"{UNUSABLE_TASK_ID}: {shorten(ascii(task_id))}"
            return Sent(Outcome.UNKNOWN, message=message)
        return Sent(Outcome.ACCEPTED, upstream_task_id=task_id)

    def _settle(self, job: QueuedJob, sent: Sent) -> None:
        """Record a queued job's answer (see the module docstring)."""
        if sent.outcome is Outcome.BUSY:
            limit = self.queue.busy(job, sent.retry_after)
            logger.info(
                "the upstream is busy: job %d waits again; the limit assumed is %.1f jobs, "
                "submissions paused %.1fs",
                job.job_id,
                limit.window,
                max(0.0, limit.paused_until - self.queue.clock()),
            )
            return
        if sent.outcome is Outcome.UNREACHABLE:
            self.queue.unsent([job], pause=True, retry_after=sent.retry_after)
            logger.warning("job %d waits again: %s", job.job_id, sent.error)
            return
        row = self.record(job, sent)
        if row is not None:
            self._settled(row)

    def record(self, job: QueuedJob, sent: Sent) -> JobRow | None:
        """Write an answer that ends the job's sending: accepted, refused or unknown (busy
        and unreachable too, for a job sent without the queue). Returns its row now."""
        if sent.outcome is Outcome.ACCEPTED:
            assert sent.upstream_task_id is not None
            self.ledger.accepted(job.job_id, sent.upstream_task_id, self.sender)
            self.meter.submissions.inc()
            self.queue.went_through()
        elif sent.outcome is Outcome.UNKNOWN:
            self.ledger.unknown(job.job_id, sent.message or UNKNOWN_OUTCOME)
            logger.warning("job %d: %s", job.job_id, sent.message or UNKNOWN_OUTCOME)
        else:
            self.ledger.refused(job.job_id, sent.message or str(sent.error))
        return self.ledger.job(job.task_id)
