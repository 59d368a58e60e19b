"""Which gateway process follows each unfinished task, and who adopts those of a dead one.

Several processes may serve one workshop on one PostgreSQL database. Each registers under a
random id at start, beats every ``heartbeat`` seconds (on the gateway's periodic sweep), and
is the ``follower`` of the tasks it submits. A process whose beat is older than
`MISSED_BEATS` beats counts as dead; one that stops cleanly removes its row, so its tasks are
adoptable at once. On every sweep a live process claims the unfinished tasks (running, or
finished with the clip not stored yet) whose follower is dead, absent or unset (a database
from an earlier version), with one conditional ``UPDATE … SET follower = me WHERE follower =
<the old one>`` per old follower: a second claimer queues on the row locks, then finds the
follower changed and skips the row, so each task is adopted exactly once.

The rule at start: with SQLite (one process per database file, by design) a process claims
every unfinished task whatever the heartbeats say, since its killed predecessor's last beat
may still look fresh. With a networked database it claims only the orphans and adopts the
others on later sweeps, once their follower has missed its beats.

A process whose own beat came late (the database restarting, say) beats but claims nothing
on that sweep: the others were likely cut off too. Taken for dead anyway, it hands over the
tasks it finds another process now follows. Beats are stamped with each host's clock, so
gateways on several hosts need clocks in sync to well within the stale period.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Collection, Sequence

from sqlalchemy import ColumnElement, Engine, delete, insert, select, true, update

from .database import jobs, processes
from .ledger import JOB_COLUMNS, UNFINISHED, JobRow

__all__ = ["HEARTBEAT_SECONDS", "MISSED_BEATS", "Followers"]

HEARTBEAT_SECONDS = 10.0  # how often a process says it is alive (and looks for orphans)
MISSED_BEATS = 3  # beats missed before a process counts as dead and its tasks are adopted

_j, _proc = jobs.c, processes.c


class Followers:
    """This process's row among the gateway processes, and the tasks it claims to follow."""

    def __init__(
        self,
        engine: Engine,
        heartbeat: float = HEARTBEAT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if heartbeat <= 0:
            raise ValueError("the heartbeat period must be positive")
        self.engine = engine
        self.clock = clock  # a wall clock: beats are compared across processes
        self.id = secrets.token_hex(8)
        self.heartbeat = heartbeat
        self._beat_at = 0.0
        self._lock = threading.Lock()  # a sweep still running never beats after `leave`
        self._left = False

    @property
    def stale_seconds(self) -> float:
        return MISSED_BEATS * self.heartbeat

    def start(self) -> list[JobRow]:
        """Register, then claim what this process follows from the start (see the rule above)."""
        self.beat()
        if self.engine.dialect.name == "sqlite":
            return self._claim([true()])
        return self.claim()

    def sweep(self) -> list[JobRow]:
        """Beat, then adopt orphaned tasks, unless this process was itself cut off."""
        late = self.clock() - self._beat_at > self.stale_seconds
        return self.claim() if self.beat() and not late else []

    def beat(self) -> bool:
        """Stamp this process alive (registering again if a peer pruned it); prune the dead.

        False once this process has left: it beats and claims no more.
        """
        with self._lock:
            if self._left:
                return False
            now = self.clock()
            with self.engine.begin() as conn:
                found = conn.execute(
                    update(processes).where(_proc.id == self.id).values(heartbeat_at=now)
                )
                if found.rowcount == 0:
                    conn.execute(insert(processes).values(id=self.id, heartbeat_at=now))
                conn.execute(delete(processes).where(_proc.heartbeat_at < now - self.stale_seconds))
            self._beat_at = now
            return True

    def claim(self) -> list[JobRow]:
        """Take over the unfinished tasks of dead, absent or unset followers; returns them."""
        live = select(_proc.id).where(_proc.heartbeat_at >= self.clock() - self.stale_seconds)
        with self.engine.connect() as conn:
            old = conn.execute(
                select(_j.follower)
                .distinct()
                .where(UNFINISHED, _j.follower.is_(None) | _j.follower.not_in(live))
            ).scalars()
            followers = sorted(old, key=lambda follower: follower or "")
        return self._claim(
            [_j.follower.is_(None) if f is None else _j.follower == f for f in followers]
        )

    def taken(self, task_ids: Collection[str]) -> list[str]:
        """Of these tasks (followed here), those another process follows now."""
        if not task_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_j.task_id).where(_j.task_id.in_(list(task_ids)), _j.follower != self.id)
            )
            return list(rows.scalars())

    def leave(self) -> None:
        """A clean stop: peers adopt this process's tasks at their next sweep."""
        with self._lock:
            self._left = True
            with self.engine.begin() as conn:
                conn.execute(delete(processes).where(_proc.id == self.id))

    def _claim(self, conditions: Sequence[ColumnElement[bool]]) -> list[JobRow]:
        """One conditional UPDATE per condition, each in its own transaction: no claim holds
        its row locks while it waits for another claim's."""
        claimed: list[JobRow] = []
        for condition in conditions:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    update(jobs)
                    .where(UNFINISHED, condition)
                    .values(follower=self.id)
                    .returning(*JOB_COLUMNS)
                )
                claimed.extend(JobRow(*row) for row in rows)
        return claimed
