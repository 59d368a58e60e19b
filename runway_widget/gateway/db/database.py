"""The gateway's tables (SQLAlchemy 2 Core) and how to open the database they live in.

SQLite (WAL, in ``RUNWAY_WIDGET_HOME``) for one gateway process; PostgreSQL by URL when
several processes serve one workshop. Counters live on the participant row so a quota is
reserved by one conditional ``UPDATE`` whose row count says whether it fitted: no
read-check-write window for a race to slip through, on either database.

Tables are created when missing, and so are columns a newer version added (nullable ones,
by ``ALTER TABLE … ADD COLUMN``) and their indexes: a database from an earlier version opens
as it is.

Nothing secret is stored: tokens only as SHA-256 hashes, never the upstream key or a
webhook secret. Join codes are kept as written, beside the hash they are looked up by: a
code goes on the board and the projector, the instructor must be able to read it again, and
what it gives is bounded by its seats (it can be closed or rotated).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.schema import CreateIndex

from ...store import default_path
from ..upstream_limit import UpstreamLimit
from .names import look_key
from .write_gate import WriteGate

__all__ = [
    "DB_FILE",
    "UPSTREAM_ROW",
    "JobState",
    "default_url",
    "jobs",
    "join_codes",
    "metadata",
    "open_engine",
    "participants",
    "processes",
    "upstream_state",
]

DB_FILE = "gateway.sqlite3"
UPSTREAM_ROW = 1
SQLITE_BUSY_SECONDS = 30.0
POOL_SIZE = 16
CONNECT_SECONDS = 10

metadata = MetaData()

participants = Table(
    "gateway_participants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),  # as shown; see ``names``
    Column("name_key", String(64)),  # token and join names: look-alikes share it (``names``)
    Column("hub_key", String(64)),  # hub users: their exact hub name, hashed (``names``)
    Column("token_hash", String(64), unique=True),
    Column("jobs_limit", Integer),  # NULL: no limit
    Column("credits_limit", Integer),
    Column("concurrent_limit", Integer),
    Column("jobs_used", Integer, nullable=False, default=0),
    Column("credits_used", Integer, nullable=False, default=0),
    Column("running", Integer, nullable=False, default=0),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("admin", Boolean, nullable=False, default=False),  # sees the room's gallery, report
    Column("join_code_id", Integer),
    Column("created_at", Float, nullable=False),
    # set by the instructor for this participant: a join code's or the hub config's quota
    # no longer overwrites it
    Column("quota_own", Boolean),
    # submissions refused for being over each part of the quota (NULL: none yet)
    Column("over_jobs", Integer),
    Column("over_credits", Integer),
    Column("over_concurrent", Integer),
    Column("queue_first", Boolean),  # an admin put their jobs at the head of the queue
)

join_codes = Table(
    "gateway_join_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("hint", String(16), nullable=False),
    Column("seats", Integer, nullable=False),
    Column("seats_used", Integer, nullable=False, default=0),
    Column("jobs_limit", Integer),
    Column("credits_limit", Integer),
    Column("concurrent_limit", Integer),
    Column("created_at", Float, nullable=False),
    Column("code", String(64)),  # as the instructor wrote it (NULL: from before it was kept)
    Column("closed", Boolean),  # NULL or false: open
    Column("owner_id", Integer),  # a personal code (``roster import``): whose seat it is
)

# added after the first version: created by `_add_missing_columns` on an older database
Index("gateway_participants_by_look", participants.c.name_key, unique=True)
Index("gateway_participants_by_hub_name", participants.c.hub_key, unique=True)


class JobState(str, enum.Enum):
    """Where a job stands in the ledger (the ``state`` column keeps these strings).

    ``queued`` → ``sending`` → ``submitted`` → ``finished`` | ``failed``. From ``sending``
    a job goes back to ``queued`` only when the upstream certainly did not take it (busy,
    unreachable), to ``refused`` when it said no, to ``unknown`` when no answer came (it may
    exist: never sent again). ``queued`` → ``cancelled`` when its owner withdraws it.
    ``reserved`` is what an earlier version wrote before its submit; none is made now.
    """

    RESERVED = "reserved"
    QUEUED = "queued"
    SENDING = "sending"
    SUBMITTED = "submitted"
    FINISHED = "finished"
    FAILED = "failed"
    REFUSED = "refused"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


jobs = Table(
    "gateway_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant_id", Integer, ForeignKey(participants.c.id), nullable=False, index=True),
    Column("task_id", String(200), unique=True),  # the participant's id for the job
    Column("state", String(16), nullable=False, index=True),
    Column("credits", Integer, nullable=False),
    Column("request", Text, nullable=False),  # the public payload, as JSON
    Column("status", String(32)),
    Column("percentage", Integer),
    Column("message", Text),
    Column("upstream_video_url", Text),
    Column("video_key", String(64), unique=True),
    Column("video_path", Text),
    Column("follower", String(32)),  # the gateway process following the task (see followers)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("hidden_at", Float),  # hidden from the gallery by an admin (moderation)
    # added with the queue (see ``queue``): the upstream's id once it took the job (an
    # earlier version's jobs have it copied from task_id), the owner's turn, when it was sent
    Column("upstream_task_id", String(200)),
    Column("turn", Integer),
    Column("sent_at", Float),
)
Index("gateway_jobs_by_upstream_task", jobs.c.upstream_task_id, unique=True)

# the gateway processes alive on this database: a stale heartbeat lets the others adopt its tasks
processes = Table(
    "gateway_processes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("heartbeat_at", Float, nullable=False),
)


# what the gateway processes sharing this database assume of the upstream: one row (id 1),
# locked by every claim of a queued job, so processes together never pass the limit
upstream_state = Table(
    "gateway_upstream",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("window", Float, nullable=False),  # the learned limit (see ``upstream_limit``)
    Column("threshold", Float),  # NULL: still finding it (slow start)
    Column("paused_until", Float, nullable=False),  # time.time(): no submission before
    Column("decreased_at", Float, nullable=False),  # the last lowering of the window
    Column("busy_streak", Integer, nullable=False),  # "busy" answers in a row
    Column("busy_total", Integer, nullable=False),  # "busy" answers since the database began
    Column("probe_jobs", Float, nullable=False),  # jobs ended before a higher limit is tried
    Column("stated", Integer),  # --upstream-concurrency of the last process started
)


def default_url() -> str:
    """``sqlite:///$RUNWAY_WIDGET_HOME/gateway.sqlite3`` (else the per-user data directory)."""
    folder = default_path().parent
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / DB_FILE}"


def open_engine(url: str | None = None) -> Engine:
    """An engine on ``url`` (default: the embedded SQLite file), with the tables created."""
    parsed = make_url(url or default_url())
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
            # enough kept open for every thread that may hold one: opening a SQLite
            # connection (and setting its pragmas) costs far more than a query
            pool_size=POOL_SIZE,
            max_overflow=POOL_SIZE,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        WriteGate.install(engine, SQLITE_BUSY_SECONDS)
    else:
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=POOL_SIZE // 2,
            max_overflow=POOL_SIZE // 2,
            connect_args={"connect_timeout": CONNECT_SECONDS},  # an unreachable host fails
        )
    metadata.create_all(engine)
    _add_missing_columns(engine)
    _key_old_names(engine)
    _name_old_upstream_tasks(engine)
    _upstream_row(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """``create_all`` makes missing tables, not missing columns: add those a newer version
    brought (all nullable), then their indexes. ``IF NOT EXISTS`` lets processes start
    together on PostgreSQL."""
    quote = engine.dialect.identifier_preparer.quote
    guard = " IF NOT EXISTS" if engine.dialect.name == "postgresql" else ""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(engine.dialect)
                with engine.begin() as conn:
                    conn.execute(
                        text(
                            f"ALTER TABLE {quote(table.name)} "
                            f"ADD COLUMN{guard} {quote(column.name)} {kind}"
                        )
                    )
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                _create_index(engine, table, index)


def _create_index(engine: Engine, table: Table, index: Index) -> None:
    """Create ``index``; another process starting at the same moment may have been first."""
    try:
        with engine.begin() as conn:
            conn.execute(CreateIndex(index, if_not_exists=True))
    except DBAPIError:
        if index.name not in {found["name"] for found in inspect(engine).get_indexes(table.name)}:
            raise


def _key_old_names(engine: Engine) -> None:
    """Token holders from an earlier version get their look-alike key where it is free (of
    two look-alikes from before, the second keeps its name but no key)."""
    p = participants.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(p.id, p.name).where(p.name_key.is_(None), p.token_hash.is_not(None))
        ).all()
    for row in rows:
        try:
            key = look_key(row.name)
            with engine.begin() as conn:
                conn.execute(
                    update(participants)
                    .where(p.id == row.id, p.name_key.is_(None))
                    .values(name_key=key)
                )
        except (ValueError, IntegrityError):
            continue


def _name_old_upstream_tasks(engine: Engine) -> None:
    """An earlier version's jobs were known by the upstream's own id: copy it to
    ``upstream_task_id``, where the poller and the upstream webhook look for it."""
    j = jobs.c
    sent = (JobState.SUBMITTED, JobState.FINISHED, JobState.FAILED)
    with engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(j.upstream_task_id.is_(None), j.task_id.is_not(None), j.state.in_(sent))
            .values(upstream_task_id=j.task_id)
        )


def _upstream_row(engine: Engine) -> None:
    """The one `upstream_state` row, made if missing (processes starting together may race)."""
    u = upstream_state.c
    with engine.connect() as conn:
        if conn.execute(select(u.id).where(u.id == UPSTREAM_ROW)).first() is not None:
            return
    try:
        with engine.begin() as conn:
            values = dataclasses.asdict(UpstreamLimit())
            conn.execute(insert(upstream_state).values(id=UPSTREAM_ROW, **values))
    except IntegrityError:
        pass  # another process made it first


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the one writer; FULL sync keeps every paid job on disk."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
