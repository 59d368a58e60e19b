"""SQLite writers of one process take turns on a lock, not in SQLite's busy handler.

SQLite lets one connection write at a time. Another that wants to write meanwhile retries
in SQLite's busy handler, which sleeps 1, 2, 5, 10 … then 100 ms between tries: under a
room's submissions (each writes twice) and the poller's updates, those sleeps were most of a
submission's time, and a writer could lose the race again and again. Here a connection takes
the engine's gate just before its first writing statement (where SQLite takes its write lock)
and gives it back when it returns to the pool, its transaction committed (or rolled back), so
this process's writers queue on a lock and each starts the moment the one before is done.
Readers never wait (WAL); other processes (a ``gateway token add`` from the command line)
still meet SQLite's own busy handler.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Connection, Engine, event

__all__ = ["WriteGate"]

logger = logging.getLogger("runway_widget.gateway")

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP")
_HELD = "runway_widget.write_gate"  # in the connection's info while it holds the gate


class WriteGate:
    """One writing transaction at a time on ``engine``; install with `WriteGate.install`.

    A writer waits at most ``timeout`` seconds (SQLite's own busy timeout) and then goes on
    without the gate, so the gate never turns a slow writer into a deadlock: SQLite decides.
    """

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout

    @classmethod
    def install(cls, engine: Engine, timeout: float) -> WriteGate:
        gate = cls(timeout)
        event.listen(engine, "before_cursor_execute", gate._before_execute)
        # after the commit (the connection's own "commit" event comes before it)
        for done in ("checkin", "invalidate", "detach"):
            event.listen(engine.pool, done, gate._release)
        return gate

    def _before_execute(self, conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        if _HELD in conn.info or not _writes(statement):
            return
        if self._lock.acquire(timeout=self._timeout):
            conn.info[_HELD] = True
        else:
            logger.warning("a database write waited %g s for its turn; going ahead", self._timeout)

    def _release(self, dbapi_connection: Any, record: Any, *args: Any) -> None:
        if record is not None and record.info.pop(_HELD, None):
            self._lock.release()


def _writes(statement: str) -> bool:
    return statement.lstrip()[:7].upper().startswith(_WRITES)
