"""The workshop's memory of its tasks, and ``/fetch-many`` answered with one ledger read.

`FollowedTasks` is shared by four threads; each of its steps is atomic, and these tests pin
what the steps mean when the threads' order goes the unlucky way: a task that ends before
its tracker handle is kept, a task handed to another process while an update is in flight.
"""

from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import event

from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.ledger import JobRow, Ledger
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.followed import FollowedTasks
from runway_widget.models import Task
from tests.gateway_support import call, demo_gateway

pytestmark = pytest.mark.timeout(120)


@dataclass
class Handle:
    """What `FollowedTasks` keeps of a tracker handle: its task id."""

    task_id: str


def _row(task_id: str, state: str = "submitted") -> JobRow:
    return JobRow(1, task_id, state, "processing", 10, None, None, None, None)


def test_a_task_that_ended_before_its_handle_came_is_not_polled():
    tasks = FollowedTasks()
    tasks.remember(_row("t1"))
    tasks.remember(_row("t1", "finished"))  # the updates thread was quicker than track()
    assert tasks.poll("t1", Handle("t1")) is False  # so the caller cancels the handle
    assert tasks.polled() == []


def test_an_ended_task_gives_back_the_handle_that_polled_it():
    tasks = FollowedTasks()
    tasks.remember(_row("t1"))
    handle = Handle("t1")
    assert tasks.poll(handle.task_id, handle) is True and tasks.polled() == ["t1"]
    assert tasks.remember(replace(_row("t1"), percentage=50)) is None  # still running
    assert tasks.remember(_row("t1", "failed")) is handle
    assert tasks.polled() == [] and tasks.row("t1").state == "failed"


def test_a_task_handed_over_is_not_brought_back_by_an_update_in_flight():
    tasks = FollowedTasks()
    tasks.adopt(_row("t1"))
    handle = Handle("t1")
    tasks.poll(handle.task_id, handle)
    assert tasks.hand_over("t1") is handle
    assert tasks.remember(_row("t1", "finished")) is None  # a late update of this process
    assert tasks.poll("t1", Handle("t1")) is False
    assert tasks.row("t1") is None  # answered from the ledger, where the new follower writes
    tasks.adopt(_row("t1"))  # adopted back after that process died
    assert tasks.row("t1") is not None


def test_a_handle_kept_while_its_task_ends_on_another_thread_is_never_left_behind():
    tasks = FollowedTasks()
    submitted: queue.Queue[str | None] = queue.Queue()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible

    def submit() -> None:  # the upstream pool: remember, then keep the tracker's handle
        for i in range(2000):
            tasks.remember(_row(f"t{i}"))
            submitted.put(f"t{i}")
            tasks.poll(f"t{i}", Handle(f"t{i}"))
        submitted.put(None)

    def end() -> None:  # the updates thread: each task ends as soon as it was submitted
        while (task_id := submitted.get()) is not None:
            tasks.remember(_row(task_id, "finished"))

    threads = [threading.Thread(target=submit), threading.Thread(target=end)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert tasks.polled() == []  # every ended task's handle went back to be cancelled


# -- /fetch-many -------------------------------------------------------------------------------


def _finished_earlier(db: str, name: str, count: int) -> tuple[str, list[str]]:
    """A participant whose ``count`` tasks ended before this gateway started; their token
    and task ids (not in the new process's memory: it answers them from the ledger)."""
    engine = open_engine(db)
    roster, ledger = Roster(engine), Ledger(engine)
    token = roster.add(name, Limits())
    who = roster.authenticate(token)
    assert who is not None
    upstream_ids = [f"{name}-{i:02d}" for i in range(count)]
    task_ids = []
    for upstream_id in upstream_ids:
        job = ledger.reserve(who.id, 5, {"prompt": upstream_id}, sender="gone")
        ledger.accepted(job.job_id, upstream_id, "gone")
        task_ids.append(job.task_id)
    ledger.update_tasks(
        [Task(t, "finished", 100, video_url=f"https://cdn.test/{t}.mp4") for t in upstream_ids]
    )
    for task_id in task_ids:
        ledger.video_stored(task_id, "")  # the copy had failed: nothing left to follow
    engine.dispose()
    return token, task_ids


def test_fetch_many_reads_the_ledger_once_for_twenty_ids(tmp_path):
    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    token, mine = _finished_earlier(db, "uma", 19)
    _, theirs = _finished_earlier(db, "vic", 1)
    asked = [theirs[0], *reversed(mine)]
    with demo_gateway(tmp_path, db=db) as gateway:
        reads: list[str] = []

        def count(conn, cursor, statement, *args) -> None:
            # the queue's own reads (its thread looks at the queue now and then) aside
            if "gateway_jobs" in statement and threading.current_thread().name.startswith(
                "gateway-db"
            ):
                reads.append(statement)

        event.listen(gateway.engine, "before_cursor_execute", count)
        reply = call(gateway, "POST", "/fetch-many", token, json={"task_ids": asked})
        event.remove(gateway.engine, "before_cursor_execute", count)
    assert reply.status_code == 200
    assert [task["task_id"] for task in reply.json()["tasks"]] == list(reversed(mine))
    assert len(reads) == 1
