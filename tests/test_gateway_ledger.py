"""The ledger's task updates: many in one transaction, each job ended exactly once; what an
earlier version left behind, judged on a fake clock."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from runway_widget.gateway.db.database import jobs, open_engine
from runway_widget.gateway.db.ledger import Ledger
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.workshop import ORPHAN_SECONDS
from runway_widget.models import Task
from tests.fake_clock import FakeClock


@pytest.fixture
def ledger(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    yield Ledger(engine)
    engine.dispose()


def _running(ledger: Ledger, participant_id: int) -> int:
    account = ledger.account(participant_id)
    assert account is not None
    return int(account["running"])


def _submitted(ledger: Ledger, participant_id: int, *task_ids: str) -> None:
    """Jobs the upstream took as ``task_ids`` (their participants know them by other ids)."""
    for task_id in task_ids:
        job = ledger.reserve(participant_id, 5, {"prompt": task_id}, sender="this-process")
        assert ledger.accepted(job.job_id, task_id, "this-process")


def _upstream(ledger: Ledger, *task_ids: str) -> dict[str, object]:
    return {row.upstream_task_id: row for row in ledger.jobs_by_upstream(task_ids)}


def test_one_batch_records_progress_and_ends_finished_and_failed_tasks(ledger):
    owner = Roster(ledger.engine).add("ada", Limits(jobs=10))
    participant = Roster(ledger.engine).authenticate(owner)
    assert participant is not None
    _submitted(ledger, participant.id, "t1", "t2", "t3")
    assert _running(ledger, participant.id) == 3

    ledger.update_tasks(
        [
            Task("t1", status="processing", percentage=40),
            Task("t2", status="finished", percentage=100, video_url="https://cdn.test/t2.mp4"),
            Task("t3", status="failed", message="the upstream refused the image"),
        ]
    )

    rows = _upstream(ledger, "t1", "t2", "t3", "unknown")
    assert set(rows) == {"t1", "t2", "t3"}
    assert (rows["t1"].state, rows["t1"].status, rows["t1"].percentage) == (
        "submitted",
        "processing",
        40,
    )
    assert rows["t2"].state == "finished"
    assert rows["t2"].upstream_video_url == "https://cdn.test/t2.mp4"
    assert rows["t2"].video_key  # the clip gets its unguessable gateway URL
    assert rows["t3"].state == "failed"
    assert rows["t3"].message == "the upstream refused the image"
    assert rows["t3"].video_key is None
    assert _running(ledger, participant.id) == 1


def test_an_end_seen_twice_frees_the_running_slot_once(ledger):
    token = Roster(ledger.engine).add("bo", Limits(jobs=10))
    participant = Roster(ledger.engine).authenticate(token)
    assert participant is not None
    _submitted(ledger, participant.id, "t1", "t2")
    finished = Task("t1", status="finished", percentage=100, video_url="https://cdn.test/1.mp4")

    ledger.update_tasks([finished])
    key = _upstream(ledger, "t1")["t1"].video_key
    ledger.update_tasks([finished, Task("t1", status="processing", percentage=10)])

    assert _running(ledger, participant.id) == 1
    row = _upstream(ledger, "t1")["t1"]
    assert (row.state, row.status, row.video_key) == ("finished", "finished", key)


def test_updates_for_tasks_the_ledger_does_not_follow_change_nothing(ledger):
    ledger.update_tasks([Task("nobody's", status="finished", video_url="https://cdn.test/x.mp4")])
    assert ledger.jobs_by_upstream(["nobody's"]) == []


def test_a_reservation_cut_short_is_unknown_once_older_than_any_submit_takes(tmp_path):
    clock = FakeClock()
    engine = open_engine(f"sqlite:///{tmp_path / 'clocked.sqlite3'}")
    try:
        ledger = Ledger(engine, clock)
        who = Roster(engine).authenticate(Roster(engine).add("ada", Limits(jobs=3)))
        assert who is not None
        job = ledger.reserve(who.id, 5, {"prompt": "p"})
        with engine.begin() as conn:  # as an earlier version left it, dying mid-submit
            conn.execute(update(jobs).where(jobs.c.id == job.job_id).values(state="reserved"))
        clock.advance(ORPHAN_SECONDS - 1)  # its submit might still be under way elsewhere
        assert ledger.orphans_to_unknown(ORPHAN_SECONDS) == 0
        clock.advance(2)
        assert ledger.orphans_to_unknown(ORPHAN_SECONDS) == 1
        row = ledger.job(job.task_id)
        account = ledger.account(who.id)
    finally:
        engine.dispose()
    assert row is not None and row.state == "unknown"
    assert account is not None and (account["jobs_used"], account["running"]) == (1, 0)
