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
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.schema import CreateIndex

from ...store import default_path
from .names import look_key
from .write_gate import WriteGate

__all__ = [
    "DB_FILE",
    "JobState",
    "default_url",
    "jobs",
    "join_codes",
    "metadata",
    "open_engine",
    "participants",
    "processes",
]

DB_FILE = "gateway.sqlite3"
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

    ``reserved`` → ``submitted`` → ``finished`` | ``failed``, or ``reserved`` → ``refused``
    (the upstream certainly did not take it) | ``unknown`` (no answer: it may exist).
    """

    RESERVED = "reserved"
    SUBMITTED = "submitted"
    FINISHED = "finished"
    FAILED = "failed"
    REFUSED = "refused"
    UNKNOWN = "unknown"


jobs = Table(
    "gateway_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("participant_id", Integer, ForeignKey(participants.c.id), nullable=False, index=True),
    Column("task_id", String(200), unique=True),
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
)

# the gateway processes alive on this database: a stale heartbeat lets the others adopt its tasks
processes = Table(
    "gateway_processes",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("heartbeat_at", Float, nullable=False),
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


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the one writer; FULL sync keeps every paid job on disk."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
