"""What replicas on one database share beyond the ledger, and what one process keeps alone.

On PostgreSQL: each request's statements on each thread's own connection (`RawStatements`),
rate-limit buckets in the database (`SharedBuckets`), pruned every `PRUNE_SECONDS`, and one
cookie secret for every replica. On SQLite (one process): buckets in memory, and the
reads through SQLAlchemy (or inline, for tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from concurrent.futures import Executor
from typing import Any

from sqlalchemy import Engine

from .db.buckets import SharedBuckets
from .db.database import CONNECT_SECONDS
from .db.raw_statements import RawStatements
from .ratelimit import Buckets, JoinGuard, MemoryBuckets, RateLimiter, Runner

__all__ = ["PRUNE_SECONDS", "Sharing", "cookie_secret"]

logger = logging.getLogger("runway_widget.gateway")

PRUNE_SECONDS = 60.0  # how often shared buckets that are full again are dropped
# a replica takes a participant's tokens a quarter of their burst at a time, at most five:
# the rest stays in the room's bucket for the other replicas
LEASE_SHARE, LEASE_MOST = 4, 5


class Sharing:
    """The statements and buckets of one gateway process, shared with its replicas or not."""

    def __init__(self, engine: Engine) -> None:
        self.shared = engine.dialect.name != "sqlite"  # replicas may share the database
        self.statements = (
            RawStatements(engine, {"connect_timeout": CONNECT_SECONDS}) if self.shared else None
        )
        self.buckets: Buckets = (
            SharedBuckets(engine, self.statements)
            if self.statements is not None
            else MemoryBuckets()
        )

    def limiter(self, rate: float, burst: int, run: Runner) -> RateLimiter:
        """Each participant's request rate."""
        lease = max(1, min(LEASE_MOST, burst // LEASE_SHARE))
        return RateLimiter(rate, burst, buckets=self.buckets, lease=lease, run=run)

    def join_guard(self, run: Runner) -> JoinGuard:
        return JoinGuard(buckets=self.buckets, run=run)

    def prune(self, executor: Executor) -> None:
        """Drop the shared buckets that are full again, off the event loop (a periodic job)."""
        buckets = self.buckets
        if not isinstance(buckets, SharedBuckets):
            return

        def prune() -> None:
            try:
                buckets.prune()
            except Exception:
                logger.exception("could not prune the rate-limit buckets; the next sweep tries")

        executor.submit(prune)


def cookie_secret(given: bytes | None, hub_auth: Any, shared: bool) -> bytes:
    """What signs browsers' cookies (page sessions, the hub's OAuth state and token): the
    same on every replica, or a browser signed in on one is a stranger to the next.

    Given (``RUNWAY_GATEWAY_COOKIE_SECRET``), or derived from the service's own hub API
    token, which every replica of the service holds and nobody else does; otherwise this
    process's own, and sign-ins last as long as it does.
    """
    if given:
        return given
    token = getattr(hub_auth, "api_token", None)
    if token:
        return hmac.new(token.encode(), b"runway-widget gateway cookies", hashlib.sha256).digest()
    if shared:
        logger.warning(
            "browser sign-ins hold on this process only: give every process sharing the "
            "database the same RUNWAY_GATEWAY_COOKIE_SECRET"
        )
    return os.urandom(32)
