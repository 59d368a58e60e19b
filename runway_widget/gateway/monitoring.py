"""What a cluster asks of a replica: ``/ready`` for its readiness probe, ``/metrics`` for
Prometheus.

- ``/health`` (in ``handlers``) is the liveness probe: the process answers. It never asks the
  database, so a database outage does not get every replica restarted in turn.
- ``/ready`` answers 200 while the database does (one ``SELECT 1`` at most every
  `READY_CACHE_SECONDS`, with a deadline), else 503: a replica that cannot reach the database
  can neither authenticate nor reserve quota, so the Service stops sending it participants.
  It names the replica (``process``: its id among the ``followers``), so an operator can
  tell which replica follows which task.
- ``/metrics`` on the gateway's own port is for the room's admins (an admin token, or a hub
  admin's token); ``--metrics-port`` serves it without sign-in on a port of its own, for
  Prometheus inside the cluster (keep that port off the proxy and behind a NetworkPolicy).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from .handlers import ApiError, AuthenticatedHandler, BaseApiHandler, Context
from .metrics import CONTENT_TYPE, Meter

if TYPE_CHECKING:
    from .participant_webhooks import ParticipantWebhooks
    from .workshop import Workshop

__all__ = ["DatabaseCheck", "MetricsPort", "monitoring_routes", "watch"]

READY_SECONDS = 2.0  # the database must answer within this
READY_CACHE_SECONDS = 1.0  # probes (and a flood of them) ask the database at most this often


class DatabaseCheck:
    """Whether the database answers, asked on a thread of its own, one question at a time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-ready")
        self._asking: asyncio.Future[bool] | None = None
        self._known: tuple[float, bool] = (float("-inf"), False)

    async def reachable(self) -> bool:
        when, answer = self._known
        if time.monotonic() - when < READY_CACHE_SECONDS:
            return answer
        if self._asking is None:  # later probes wait for the question already asked
            self._asking = asyncio.get_running_loop().run_in_executor(self._thread, self._ask)
        asking = self._asking
        try:
            answer = await asyncio.wait_for(asyncio.shield(asking), READY_SECONDS)
        except (asyncio.TimeoutError, Exception):
            answer = False
        if asking.done() and self._asking is asking:
            self._asking = None
        self._known = (time.monotonic(), answer)
        return answer

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _ask(self) -> bool:
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True


class ReadyHandler(BaseApiHandler):
    def initialize(self, context: Context, check: DatabaseCheck) -> None:  # type: ignore[override]
        super().initialize(context)
        self._check = check

    async def get(self) -> None:
        reachable = await self._check.reachable()
        self.set_status(200 if reachable else 503)
        self.reply(
            {
                "ok": reachable,
                "database": "reachable" if reachable else "unreachable",
                "process": self.context.workshop.followers.id,
            }
        )


class AdminMetricsHandler(AuthenticatedHandler):
    """``GET /metrics`` on the gateway's port: the room's admins only."""

    def get(self) -> None:
        if not self.who.admin:
            raise ApiError(403, "only the workshop's admins read the metrics")
        _expose(self, self.context.meter)


class OpenMetricsHandler(RequestHandler):
    """``GET /metrics`` on ``--metrics-port``: no sign-in (keep the port inside the cluster)."""

    def initialize(self, meter: Meter) -> None:
        self._meter = meter

    def get(self) -> None:
        _expose(self, self._meter)


def _expose(handler: RequestHandler, meter: Meter) -> None:
    handler.set_header("Content-Type", CONTENT_TYPE)
    handler.set_header("Cache-Control", "no-store")
    handler.finish(meter.exposition())


def monitoring_routes(
    context: Context, check: DatabaseCheck
) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    prefix = context.prefix.rstrip("/")
    return [
        (prefix + "/ready", ReadyHandler, {"context": context, "check": check}),
        (prefix + "/metrics", AdminMetricsHandler, {"context": context}),
    ]


class MetricsPort:
    """``--metrics-port``: ``/metrics`` and nothing else, on a listener of its own."""

    def __init__(self, meter: Meter, host: str, port: int) -> None:
        self._application = Application([("/metrics", OpenMetricsHandler, {"meter": meter})])
        self._address = (port, host)
        self._server: HTTPServer | None = None

    def listen(self) -> None:
        self._server = HTTPServer(self._application)
        self._server.add_sockets(bind_sockets(*self._address))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def watch(meter: Meter, workshop: Workshop, webhooks: ParticipantWebhooks) -> None:
    """The gauges, read at each scrape."""
    meter.gauge(
        "lane_waiting",
        "Calls waiting for a free worker in this replica's lanes",
        lambda: {
            ("upstream",): workshop.upstream.waiting,
            ("clips",): workshop.clips.waiting,
            ("webhooks",): webhooks.waiting,
        },
        labels=["lane"],
    )
    queue = workshop.submissions.queue  # the room's, from the ledger
    meter.gauge(
        "queued_jobs",
        "Jobs waiting in the fair queue for the upstream (the room's, every replica's)",
        lambda: queue.status()["queued"],
    )
    meter.gauge(
        "queue_oldest_wait_seconds",
        "Seconds the job waiting longest in the queue has waited (0: nobody waits)",
        lambda: queue.status()["oldest_wait"] or 0.0,
    )
    meter.gauge(
        "upstream_concurrency_limit",
        "Jobs the gateway lets run upstream at once (stated, or learned from its answers)",
        lambda: queue.status()["limit"],
    )
    meter.gauge(
        "poll_lag_seconds",
        "Seconds the task this replica has left longest without a poll has waited "
        "(up to the longest poll interval, 15 s, is the plan; more: the poller is behind)",
        workshop.poll_lag,
    )
    meter.gauge(
        "clip_store_clips",
        "Clips in the store all replicas share",
        lambda: workshop.clips.size()[0],
    )
    meter.gauge(
        "clip_store_bytes",
        "Bytes of clips in the store all replicas share",
        lambda: workshop.clips.size()[1],
    )
