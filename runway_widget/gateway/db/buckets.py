"""Token buckets in PostgreSQL, so that replicas sharing it allow together what one would.

One row per bucket: its key, the tokens left and when they were counted. Taking tokens is one
statement, ``INSERT … ON CONFLICT DO UPDATE … RETURNING``; the row stays locked while it runs,
so takers on any replica queue and each sees what the one before left. It runs on the
calling thread's own connection (`raw_statements`): one statement, its own transaction.
Time is the database server's (``clock_timestamp()``), so replicas on hosts whose clocks
differ agree on refills. The table is ``UNLOGGED``: a rate limit needs no crash safety, and
its writes skip the write-ahead log. A row whose bucket has filled up again is pruned (no
row is a full bucket).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    delete,
    func,
    inspect,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from .raw_statements import RawStatements

__all__ = ["SharedBuckets"]

_metadata = MetaData()  # apart from the other tables: PostgreSQL only, and unlogged
buckets = Table(
    "gateway_rate_buckets",
    _metadata,
    Column("key", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),  # left after the last take
    Column("taken", Float, nullable=False),  # by the last take (what RETURNING reports)
    Column("counted_at", Float, nullable=False),  # epoch seconds, the server's clock
    Column("full_at", Float, nullable=False, index=True),  # when it is full again
    prefixes=["UNLOGGED"],
)

_b = buckets.c
_NOW = cast(func.extract("epoch", func.clock_timestamp()), Float)
_RATE, _BURST = bindparam("b_rate", type_=Float), bindparam("b_burst", type_=Float)
_WANT = bindparam("b_want", type_=Float)
_AVAILABLE = func.least(_BURST, _b.tokens + func.greatest(0.0, _NOW - _b.counted_at) * _RATE)
_TAKEN = func.least(_WANT, func.floor(_AVAILABLE))
_FIRST = func.least(_WANT, _BURST)  # a bucket seen for the first time is full
_insert = insert(buckets).values(
    key=bindparam("b_key"),
    tokens=_BURST - _FIRST,
    taken=_FIRST,
    counted_at=_NOW,
    full_at=_NOW + _FIRST / _RATE,
)
_TAKE = _insert.on_conflict_do_update(
    index_elements=[_b.key],
    set_={
        "tokens": _AVAILABLE - _TAKEN,
        "taken": _TAKEN,
        "counted_at": _NOW,
        "full_at": _NOW + (_BURST - _AVAILABLE + _TAKEN) / _RATE,
    },
).returning(_b.taken, _b.tokens)
_REFILLED = func.least(
    _BURST,
    _b.tokens
    + func.greatest(0.0, _NOW - _b.counted_at) * _RATE
    + bindparam("b_tokens", type_=Float),
)
_GIVE = (
    update(buckets)
    .where(_b.key == bindparam("b_key"))
    .values(tokens=_REFILLED, counted_at=_NOW, full_at=_NOW + (_BURST - _REFILLED) / _RATE)
)
_PRUNE = delete(buckets).where(_b.full_at < _NOW)


class SharedBuckets:
    """The `ratelimit.Buckets` of replicas on one PostgreSQL database."""

    shared = True

    def __init__(self, engine: Engine, statements: RawStatements | None = None) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("shared rate limits need PostgreSQL")
        self.engine = engine
        self._take = (statements or RawStatements(engine)).prepare(_TAKE)
        try:
            _metadata.create_all(engine)
        except DBAPIError:  # another replica starting at the same moment created it first
            if not inspect(engine).has_table(buckets.name):
                raise

    def take(self, key: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        """Up to ``want`` whole tokens from ``key``'s bucket: (how many taken, tokens left)."""
        row = self._take(b_key=key, b_rate=rate, b_burst=burst, b_want=want)
        assert row is not None  # the upsert returns its row
        taken, left = row
        return int(taken), float(left)

    def give(self, key: str, rate: float, burst: int, tokens: float) -> None:
        """Give ``key`` back ``tokens`` (never above ``burst``)."""
        with self.engine.begin() as conn:
            conn.execute(
                _GIVE, {"b_key": key, "b_rate": rate, "b_burst": burst, "b_tokens": tokens}
            )

    def prune(self) -> int:
        """Forget the buckets that are full again; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(_PRUNE).rowcount
