"""SQLite writers of one process take turns on the engine's gate, and always give it back."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from runway_widget.gateway.db.database import open_engine, participants
from runway_widget.gateway.db.write_gate import WriteGate

pytestmark = pytest.mark.timeout(60)


def _row(name: str) -> dict:
    return {"name": name, "created_at": 0.0, "jobs_used": 0, "credits_used": 0, "running": 0}


@pytest.fixture
def engine(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    yield engine
    engine.dispose()


def test_a_writer_waits_for_the_one_before_to_commit(engine):
    writing, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with engine.begin() as conn:
            conn.execute(insert(participants).values(_row("first")))
            writing.set()
            release.wait(30)
            order.append("first commits")

    def second() -> None:
        with engine.begin() as conn:
            conn.execute(insert(participants).values(_row("second")))
            order.append("second wrote")

    one = threading.Thread(target=first)
    one.start()
    assert writing.wait(10)
    two = threading.Thread(target=second)
    two.start()
    with engine.connect() as conn:  # readers never wait
        assert conn.execute(select(participants.c.name)).all() == []
    release.set()
    one.join(10)
    two.join(10)
    assert order == ["first commits", "second wrote"]


def test_the_gate_is_given_back_after_a_failed_write_and_a_rollback(engine):
    gate = WriteGate.install(engine, timeout=0.5)  # a second gate: a leak would time out
    with engine.begin() as conn:
        conn.execute(insert(participants).values(_row("ann")))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(participants).values(_row("ann")))
    with engine.connect() as conn:
        conn.execute(insert(participants).values(_row("bob")))
        conn.rollback()
    with engine.connect() as conn:
        conn.execute(text("UPDATE gateway_participants SET running = 1"))
        # not committed: closing rolls it back and gives the gate back
    assert gate._lock.acquire(timeout=1)
    gate._lock.release()
    with engine.connect() as conn:
        assert conn.execute(select(participants.c.name, participants.c.running)).all() == [
            ("ann", 0)
        ]
