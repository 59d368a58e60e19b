"""Reservations made together share a transaction, and never each other's quota or fate."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text

from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.ledger import Ledger, QuotaRefused, Wanted
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.reservations import Reservations

JOB = {"prompt": "p", "generation_type": "text2video"}


@pytest.fixture
def ledger(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    yield Ledger(engine)
    engine.dispose()


def _person(ledger: Ledger, name: str, jobs: int) -> int:
    roster = Roster(ledger.engine)
    who = roster.authenticate(roster.add(name, Limits(jobs=jobs)))
    assert who is not None
    return who.id


async def _all(reservations: Reservations, wanted: list[Wanted]) -> list[object]:
    return await asyncio.gather(
        *(reservations.reserve(one) for one in wanted), return_exceptions=True
    )


def test_thirty_at_once_against_five_jobs_share_commits_and_overspend_nothing(ledger):
    ana = _person(ledger, "ana", jobs=5)
    commits = []
    event.listen(ledger.engine, "commit", lambda conn: commits.append(1))
    reservations = Reservations(ledger)
    try:
        outcomes = asyncio.run(_all(reservations, [Wanted(ana, 5, JOB)] * 30))
    finally:
        reservations.close()
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, QuotaRefused)]
    assert (len(made), len(refused)) == (5, 25)
    assert [r.turn for r in made] == [0, 1, 2, 3, 4]  # each saw the ones before it
    assert len(commits) < 30  # they waited together, and went in together
    account = ledger.account(ana)
    assert account is not None and account["jobs_used"] == 5


def test_a_reservation_the_database_refuses_fails_alone(ledger):
    with ledger.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON gateway_jobs "
                "WHEN NEW.request LIKE '%poison%' "
                "BEGIN SELECT RAISE(ABORT, 'this database refuses poison'); END"
            )
        )
    ben, cy = _person(ledger, "ben", jobs=3), _person(ledger, "cy", jobs=3)
    wanted = [
        Wanted(ben, 5, JOB),
        Wanted(cy, 5, {**JOB, "prompt": "poison"}),
        Wanted(ben, 5, JOB),
    ]
    reservations = Reservations(ledger)
    try:
        outcomes = asyncio.run(_all(reservations, wanted))
    finally:
        reservations.close()
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert "poison" in str(outcomes[1])
    used = {person: ledger.account(person)["jobs_used"] for person in (ben, cy)}
    assert used == {ben: 2, cy: 0}  # the refused one took nothing
