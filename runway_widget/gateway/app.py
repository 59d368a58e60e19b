"""The gateway server: a tornado application on one event loop, in a thread or in the foreground.

``GatewayServer(...).start()`` runs it in a background thread (a notebook, a test);
``serve_forever()`` runs it in the foreground until SIGINT/SIGTERM (the CLI, a JupyterHub
service). Replicas on one PostgreSQL are one gateway: they share quotas, followers, rate
limits (``ratelimit``), the gallery (the ledger) and clips (a folder they all mount), and
sign browsers in with one cookie secret; a participant's webhook is pushed by the replica
that took the submission, whichever replica follows the task (``peer_changes``).
Connections are bounded: request bodies by ``MAX_BODY``, connections by `SlotLimits` (how
many, how many per client address, how long each may wait), shared out per address by
`FairHTTPServer`; proxy headers count only from ``trusted_proxies``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from .._http.outbound import OutboundPolicy
from ..store import default_path
from .addresses import participant_urls
from .auth import ParticipantAuth, TokenAuth
from .clips import VideoHandler
from .connections import FairHTTPServer, SlotLimits
from .db.database import open_engine
from .db.followers import HEARTBEAT_SECONDS
from .db.ledger import Ledger
from .db.limit_row import write_stated
from .db.roster import Limits, Roster
from .handlers import BaseApiHandler, Context, NotFoundHandler, api_routes
from .hub_auth import HubParticipants
from .log_redaction import redact_tokens_in_logs
from .metrics import Meter
from .monitoring import DatabaseCheck, MetricsPort, monitoring_routes, watch
from .participant_webhooks import ParticipantWebhooks
from .peer_changes import WATCH_SECONDS, PeerChanges
from .proxies import TrustedProxies, client_network
from .push import UpstreamWebhookHandler
from .room_config import RoomConfig
from .sharing import PRUNE_SECONDS, Sharing
from .sharing import cookie_secret as cookie_secret_for
from .upstream import Upstream
from .web.gallery import ClipFeed
from .web.login import BrowserLogin, HubLogin, TokenLogin
from .web.pages import PageContext
from .web.routes import page_routes
from .workshop import Workshop

__all__ = ["GatewayServer", "bind_port"]

logger = logging.getLogger("runway_widget.gateway")
access_logger = logging.getLogger("runway_widget.gateway.access")

MAX_BODY = 3 * 1024 * 1024  # a 2 MB upload plus its multipart envelope
DB_WORKERS = 4
SWITCH_SECONDS = 0.0005
SLOT_SWEEP_MS = 1000  # how often connections past their deadline are cut


class GatewayServer:
    """One gateway: the database, the upstream, the room's state and the HTTP server.

    ``upstream_concurrency``: the jobs the upstream runs at once for its key (None: learned
    from its "busy" answers, see ``upstream_limit``). ``queue=False`` sends each submission
    at once, in its own request, as before the queue: past the upstream's limit participants
    then get its refusals (a comparison for ``benchmarks/room_burst.py``). With
    ``upstream="demo"``, ``demo_concurrency`` is the demo backend's limit. ``clock`` (a wall
    clock) stamps the ledger and times the queue's pauses and aging and the heartbeats.
    """

    def __init__(
        self,
        *,
        db: str | None = None,
        upstream: str | Upstream | None = "demo",
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        prefix: str = "/",
        auth: ParticipantAuth | None = None,
        hub_auth: Any = None,
        room: RoomConfig | None = None,
        home: str | os.PathLike[str] | None = None,
        rate: float = 10.0,
        burst: int = 20,
        poll_interval: tuple[float, float] = (0.5, 15.0),
        heartbeat: float = HEARTBEAT_SECONDS,
        slots: SlotLimits | None = None,
        trusted_proxies: Iterable[str] = (),
        allow_private_webhooks: bool = False,
        clips: str | os.PathLike[str] | None = None,
        cookie_secret: bytes | None = None,
        metrics_port: int | None = None,
        upstream_concurrency: int | None = None,
        demo_concurrency: int | None = None,
        queue: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if upstream_concurrency is not None and upstream_concurrency < 1:
            raise ValueError("upstream_concurrency must be at least 1 (None: learn it)")
        self.home = _home(home)
        self.meter = Meter()
        self.slots = slots or SlotLimits()
        self.proxies = TrustedProxies(trusted_proxies)
        redact_tokens_in_logs()
        self.host, self.port = host, port
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.public_url = public_url.rstrip("/") if public_url else None
        self.engine = open_engine(db)
        write_stated(self.engine, upstream_concurrency)
        self.roster = Roster(self.engine)
        self.ledger = Ledger(self.engine, clock)
        self.sharing = Sharing(self.engine)
        self._db_pool = ThreadPoolExecutor(DB_WORKERS, thread_name_prefix="gateway-db")
        # what the gateway may fetch or post to at addresses others chose (SPEC §8)
        self.outbound = OutboundPolicy(allow_private=allow_private_webhooks)
        self.upstream = (
            upstream
            if isinstance(upstream, Upstream)
            else Upstream.open(
                upstream, self.home, policy=self.outbound, demo_concurrency=demo_concurrency
            )
        )
        hook_secret = _webhook_secret(self.upstream.client.api_key or "")
        hook = (self.public_url + "/upstream-webhook", hook_secret) if self.public_url else None
        self.workshop = Workshop(
            self.ledger,
            self.upstream,
            Path(clips) if clips else self.home / "gateway-videos",
            self._db_pool,
            upstream_webhook=hook,
            outbound=self.outbound,
            min_interval=poll_interval[0],
            max_interval=poll_interval[1],
            heartbeat=heartbeat,
            meter=self.meter,
            reads=self.sharing.statements,
            queue=queue,
        )
        self.webhooks = ParticipantWebhooks(lambda: self.base_url, self.outbound)
        self.workshop.submissions.hooks = self.webhooks
        self.workshop.on_change(self.webhooks.deliver)
        # tasks another process sends or follows: their changes are read from the ledger
        self.peer_changes = PeerChanges(
            self.webhooks, self.workshop.followed_elsewhere, self.ledger.jobs, self._db_pool
        )
        self.room = room or RoomConfig()
        self.hub_mode = hub_auth is not None  # JupyterHub users, not tokens and join codes
        auth, login = self._sign_in(auth, hub_auth)
        self.pages = PageContext(
            login,
            ClipFeed(self.engine),
            self.roster,
            self._db_pool,
            self.room.gallery_room,
            join_url=lambda: self.participant_urls[0],
            queue=self.workshop.submissions.queue,
        )
        self.context = Context(
            auth=auth,
            workshop=self.workshop,
            roster=self.roster,
            limiter=self.sharing.limiter(rate, burst, self.workshop.run_db),
            join_guard=self.sharing.join_guard(self.workshop.run_db),
            prefix=self.prefix,
            public_url=self.public_url,
            secrets=(self.upstream.client.api_key or "", hook_secret),
            meter=self.meter,
        )
        self._database = DatabaseCheck(self.engine)
        watch(self.meter, self.workshop, self.webhooks)
        self._cookie_secret = cookie_secret_for(cookie_secret, hub_auth, self.sharing.shared)
        self._metrics = MetricsPort(self.meter, host, metrics_port) if metrics_port else None
        self._hook_secret = hook_secret
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: FairHTTPServer | None = None
        self._sockets: list[socket.socket] = []
        self._sweepers: list[PeriodicCallback] = []

    # -- identity --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where participants point their client (``ApiframeClient(base_url=…)``)."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}{self.prefix}"

    @property
    def participant_urls(self) -> list[str]:
        """The addresses participants can use, best first: with ``--host 0.0.0.0`` this
        machine's network addresses, never 127.0.0.1 (see ``addresses``)."""
        return participant_urls(self.host, self.port, self.prefix, self.public_url)

    def __repr__(self) -> str:
        return f"<GatewayServer {self.base_url} upstream={self.upstream.client.base_url}>"

    def add_participant(
        self,
        name: str,
        *,
        jobs: int | None = None,
        credits: int | None = None,
        concurrent: int | None = None,
        admin: bool = False,
    ) -> str:
        """Mint a personal token (shown once): the in-process ``gateway token add``."""
        return self.roster.add(name, Limits(jobs, credits, concurrent), admin=admin)

    def report(self) -> list[dict[str, Any]]:
        return self.roster.report()

    def connections_from(self, address: str) -> int:
        """Open connections from ``address`` (with its /64, for IPv6), while serving."""
        server = self._server
        return server.slots.held_by(client_network(address)) if server is not None else 0

    def _sign_in(
        self, auth: ParticipantAuth | None, hub_auth: Any
    ) -> tuple[ParticipantAuth, BrowserLogin]:
        """Hub users (``hub_auth``: a `HubOAuth`) or the roster's tokens, for APIs and pages."""
        if hub_auth is not None:
            hub = HubParticipants(hub_auth, self.roster, self.room, self._db_pool)
            return auth or hub, HubLogin(hub)
        embedded = self.engine.dialect.name == "sqlite"  # token reads inline: see TokenAuth
        pool = None if embedded else self._db_pool
        auth = auth or TokenAuth(self.roster, pool, self.sharing.statements)
        return auth, TokenLogin(auth, self.roster, self._db_pool)

    # -- running ---------------------------------------------------------------------------

    def application(self) -> Application:
        routes: list[Any] = api_routes(self.context)
        routes.extend(monitoring_routes(self.context, self._database))
        routes.extend(page_routes(self.prefix, self.pages))
        routes.append(
            (
                self.prefix + "/upstream-webhook",
                UpstreamWebhookHandler,
                {"context": self.context, "secret": self._hook_secret},
            )
        )
        routes.append(
            (
                self.prefix + r"/videos/(.*)",
                VideoHandler,
                {"path": str(self.workshop.clips.folder)},
            )
        )
        return Application(
            routes,
            default_handler_class=NotFoundHandler,
            default_handler_args={"context": self.context},
            log_function=_access_log,
            compress_response=False,
            xsrf_cookies=False,
            cookie_secret=self._cookie_secret,
            gateway_prefix=self.prefix,
        )

    def start(self) -> GatewayServer:
        """Serve from a background thread; returns once the port is open."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close_server())
            loop.close()

        self.workshop.resume()
        self._thread = threading.Thread(target=run, name="runway-widget-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._release()
            raise failure[0]
        logger.info("gateway serving at %s", self.base_url)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM, then stop cleanly.

        The process is the gateway's own, so it may shorten the interpreter's thread switch
        interval: the event loop then waits at most that long for the GIL after each
        database or socket call, instead of 5 ms behind a busy worker thread.
        """
        sys.setswitchinterval(SWITCH_SECONDS)

        async def main() -> None:
            await self._listen()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await self._close_server()

        self.workshop.resume()
        try:
            asyncio.run(main())
        finally:
            self._release()

    def stop(self) -> None:
        """Stop serving, stop the poller, close the upstream and the database."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        self._release()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def bind(self, sockets: list[socket.socket] | None = None) -> None:
        """Take the port now (`OSError` if it is taken), or adopt ``sockets`` from
        `bind_port`, so that nothing says "serving" before it is true; `serve_forever` or
        `start` then serve on them."""
        self._sockets = sockets or bind_port(self.host, self.port)
        self.port = self._sockets[0].getsockname()[1]

    async def _listen(self) -> None:
        server = FairHTTPServer(
            self.application(),
            max_body_size=MAX_BODY,
            max_buffer_size=MAX_BODY,
            slots=self.slots,
            proxies=self.proxies,
        )
        if not self._sockets:
            self.bind()
        server.add_sockets(self._sockets)
        self._sockets = []
        self._server = server
        if self._metrics is not None:
            self._metrics.listen()
        # each heartbeat: say this process lives, adopt dead ones' tasks, end lost reservations
        period = self.workshop.followers.heartbeat * 1000
        sweep_ms = 1000 * min(self.slots.fresh_timeout, self.slots.idle_timeout) / 2
        self._sweepers = [
            PeriodicCallback(self.workshop.sweep, period),
            PeriodicCallback(server.cut_overdue, min(SLOT_SWEEP_MS, sweep_ms)),
            PeriodicCallback(self.peer_changes.watch, 1000 * WATCH_SECONDS),
        ]
        if self.sharing.shared:
            prune = functools.partial(self.sharing.prune, self._db_pool)
            self._sweepers.append(PeriodicCallback(prune, 1000 * PRUNE_SECONDS))
        for sweeper in self._sweepers:
            sweeper.start()

    async def _close_server(self) -> None:
        for sweeper in self._sweepers:
            sweeper.stop()
        if self._metrics is not None:
            self._metrics.stop()
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    def _release(self) -> None:
        for sock in self._sockets:  # bound, never served
            sock.close()
        self._sockets = []
        self.workshop.close()
        self.webhooks.close()
        self._database.close()
        self.upstream.close()
        self._db_pool.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def _home(home: str | os.PathLike[str] | None) -> Path:
    path = Path(home).expanduser() if home else default_path().parent
    path.mkdir(parents=True, exist_ok=True)
    return path


def bind_port(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on ``host:port`` (``OSError`` if the port is taken)."""
    return bind_sockets(port, host, family=_family(host), backlog=1024)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _webhook_secret(upstream_key: str) -> str:
    """Derived from the upstream key, so it survives restarts and is stored nowhere."""
    return hmac.new(
        upstream_key.encode(), b"runway-widget gateway webhook", hashlib.sha256
    ).hexdigest()


def _access_log(handler: RequestHandler) -> None:
    """One line per request: who (by name), what, how it ended, as JSON (and as ``request``
    for `log_format.JsonLines`). No header, no query, no token."""
    request = handler.request
    path = request.path
    if "/videos/" in path:
        path = path.split("/videos/")[0] + "/videos/…"
    who = handler.caller_name if isinstance(handler, BaseApiHandler) else None
    fields = {
        "method": request.method,
        "path": path,
        "status": handler.get_status(),
        "ms": round(1000 * request.request_time(), 1),
        "participant": who,
        "remote": request.remote_ip,
    }
    access_logger.info(json.dumps(fields), extra={"request": fields})
