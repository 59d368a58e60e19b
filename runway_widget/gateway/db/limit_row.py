"""The one row of ``gateway_upstream``: the `UpstreamLimit` every gateway process shares.

Read it with `locked_limit` inside a transaction: the no-op ``UPDATE … RETURNING`` takes
the row's lock first (PostgreSQL holds it to the commit; SQLite takes its one write lock),
so a claim of queued jobs, a "busy" answer and jobs ending are applied one at a time, each
on the state the one before left.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Connection, Engine, exists, select, update

from ..upstream_limit import UpstreamLimit
from .database import UPSTREAM_ROW, JobState, jobs, upstream_state

__all__ = ["limit_of", "locked_limit", "raise_window", "store_limit", "write_stated"]

ROW = UPSTREAM_ROW
_u = upstream_state.c
_FIELDS = [field.name for field in dataclasses.fields(UpstreamLimit)]
_LOCK = (
    update(upstream_state)
    .where(_u.id == ROW)
    .values(busy_total=_u.busy_total)
    .returning(*(_u[name] for name in _FIELDS), _u.stated)
)
_READ = select(*(_u[name] for name in _FIELDS), _u.stated).where(_u.id == ROW)
_QUEUED = exists().where(jobs.c.state == JobState.QUEUED)


def write_stated(engine: Engine, stated: int | None) -> None:
    """The limit this process was told (None: learn it). The last process started says it."""
    with engine.begin() as conn:
        conn.execute(update(upstream_state).where(_u.id == ROW).values(stated=stated))


def locked_limit(conn: Connection) -> tuple[UpstreamLimit, int | None]:
    """The shared limit and the stated one, the row locked until ``conn`` commits."""
    return _limit(conn.execute(_LOCK).one())


def limit_of(conn: Connection) -> tuple[UpstreamLimit, int | None]:
    """The same, read without a lock (to show it)."""
    return _limit(conn.execute(_READ).one())


def _limit(row: Any) -> tuple[UpstreamLimit, int | None]:
    values = dict(zip(_FIELDS, row[: len(_FIELDS)], strict=True))
    return UpstreamLimit(**values), row[len(_FIELDS)]


def store_limit(conn: Connection, before: UpstreamLimit, after: UpstreamLimit) -> None:
    """Write back what changed (nothing when nothing did)."""
    changed = {
        name: getattr(after, name)
        for name in _FIELDS
        if getattr(after, name) != getattr(before, name)
    }
    if changed:
        conn.execute(update(upstream_state).where(_u.id == ROW).values(**changed))


def raise_window(conn: Connection, ended: int) -> None:
    """``ended`` jobs ended upstream: the window grows, while jobs wait for it."""
    if ended <= 0 or not conn.execute(select(_QUEUED)).scalar():
        return
    limit, stated = locked_limit(conn)
    store_limit(conn, limit, limit.ended(ended, stated))
