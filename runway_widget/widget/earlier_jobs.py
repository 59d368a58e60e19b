"""Which earlier jobs a new panel lists, and what became of demo jobs whose kernel is gone.

The job history is one journal per user (``RUNWAY_WIDGET_HOME``). A panel on a real backend
lists that backend's jobs. A panel on the demo backend lists every demo job, whatever port
its demo server had: each kernel starts its own server on a new port, and a restart must
not hide the clips made before it (they are kept on disk, see `RunwayPanel`).

A demo job still running in the journal belonged to some demo server. If that server no
longer knows the task (its kernel stopped, so the render stopped with it), the job is
journalled as failed with `ENDED_MESSAGE` so every later panel says so at once. A job still
alive in another running kernel is left out: only that kernel can follow it.

History modes: ``"user"`` lists the user's earlier jobs; ``"session"`` lists only what this
panel submits, for servers shared by several people (Voilà dashboards, the default there).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..models import Task
from ..store import JobHistory, JobRecord, JobStore

logger = logging.getLogger("runway_widget.history")

HISTORY_MODES = ("user", "session")
ENDED_MESSAGE = "ended with its demo backend: the kernel that ran it stopped"
PROBE_TIMEOUT = 1.0
PROBE_BUDGET = 3.0  # seconds for all probes of one panel start
_VOILA_VARIABLES = ("VOILA_KERNEL_ID", "VOILA_REQUEST_URL", "VOILA_SERVER_URL", "VOILA_BASE_URL")

Probe = Callable[[str, str], bool]


def in_voila(environ: Mapping[str, str] | None = None) -> bool:
    """True in a kernel that Voilà started (it sets these variables for its kernels)."""
    env = os.environ if environ is None else environ
    return any(env.get(name) for name in _VOILA_VARIABLES) or env.get(
        "SERVER_SOFTWARE", ""
    ).startswith("voila")


def history_mode(requested: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The mode asked for, else ``"session"`` under Voilà and ``"user"`` elsewhere."""
    if requested is None:
        return "session" if in_voila(environ) else "user"
    if requested not in HISTORY_MODES:
        raise ValueError(f"history must be one of {HISTORY_MODES}, not {requested!r}")
    return requested


@dataclass
class EarlierJobs:
    """The jobs a panel lists on start (newest first) and how many others it leaves out."""

    jobs: list[JobRecord] = field(default_factory=list)
    others: int = 0
    skipped: list[str] = field(default_factory=list)


def _same_backend(a: str | None, b: str) -> bool:
    return (a or "").rstrip("/") == b.rstrip("/")


def select(history: JobHistory, *, backend: str, demo: bool) -> EarlierJobs:
    """This backend's jobs; on the demo backend, every demo job of any port."""
    if demo:
        mine = [j for j in history.jobs if j.demo or _same_backend(j.backend, backend)]
    else:
        mine = [j for j in history.jobs if not j.demo and _same_backend(j.backend, backend)]
    return EarlierJobs(mine, len(history.jobs) - len(mine), list(history.skipped))


def settle_demo_jobs(
    jobs: Sequence[JobRecord],
    *,
    backend: str,
    store: JobStore,
    probe: Probe | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[JobRecord]:
    """Demo jobs of other demo servers: journal the ended ones, drop those alive elsewhere.

    Jobs of this panel's own server, finished jobs and real jobs pass through unchanged.
    """
    probe = probe or demo_task_alive
    deadline = clock() + PROBE_BUDGET
    kept: list[JobRecord] = []
    for job in jobs:
        if job.is_done or not job.demo or _same_backend(job.backend, backend):
            kept.append(job)
            continue
        if clock() < deadline and job.backend and probe(job.backend, job.task_id):
            continue  # still rendering in another kernel: only that kernel follows it
        store.record_task(Task(job.task_id, "failed", job.percentage, None, ENDED_MESSAGE))
        job.status, job.message = "failed", ENDED_MESSAGE
        kept.append(job)
    return kept


def demo_task_alive(backend: str, task_id: str) -> bool:
    """Whether the demo server at ``backend`` still answers for ``task_id`` (one quick try)."""
    from ..client.apiframe import ApiframeClient
    from ..errors import ApiframeError

    try:
        from ..demo import DEMO_API_KEY
    except ImportError:  # without PyAV, numpy or Pillow, no demo server here can be running it
        return False

    client = ApiframeClient(  # one quick try each, not held back by the read budget
        api_key=DEMO_API_KEY, base_url=backend, timeout=PROBE_TIMEOUT, max_retries=0,
        requests_per_second=100.0,
    )
    try:
        client.fetch(task_id)
    except ApiframeError as exc:
        logger.debug("demo task %s at %s is gone: %s", task_id, backend, exc)
        return False
    finally:
        client.close()
    return True

