"""SIGKILL mid-workshop loses no task: a restarted gateway resumes every unfinished one."""

from __future__ import annotations

import json
import signal
import time

import pytest
from sqlalchemy import insert, select, update

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.gateway.db.database import jobs, open_engine, participants
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.store import JobStore
from tests.gateway_support import free_port, serve_process, stop_process

pytestmark = pytest.mark.timeout(180)


def test_a_killed_gateway_resumes_every_unfinished_task_from_the_ledger(tmp_path):
    from runway_widget.demo import DemoServer

    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    token = Roster(open_engine(db)).add("olga", Limits(jobs=5))
    port = free_port()
    with DemoServer(job_seconds=1.5) as upstream:
        env = {"APIFRAME_API_KEY": upstream.api_key, "RUNWAY_WIDGET_HOME": str(tmp_path)}
        args = ("--db", db, "--upstream", upstream.base_url)
        log = tmp_path / "gateway.log"
        first = serve_process(port, *args, env=env, log=log)
        client = ApiframeClient(
            token, f"http://127.0.0.1:{port}", store=JobStore(tmp_path / "olga.jsonl")
        )
        task_ids = [
            client.imagine(prompt=f"clip {i}", generation_type="text2video") for i in range(3)
        ]
        _sent(db, task_ids)
        first.send_signal(signal.SIGKILL)
        first.wait(10)  # its port is free again once it is reaped
        second = serve_process(port, *args, env=env, log=log)
        try:
            finished = [client.wait(t, timeout=60, poll_interval=0.3) for t in task_ids]
        finally:
            stop_process(second)
        assert upstream.stats.get("/runway-imagine") == 3  # nothing resubmitted
    assert all(t.video_url.startswith(f"http://127.0.0.1:{port}/videos/") for t in finished)
    assert "resumed 3 unfinished task(s)" in log.read_text()
    report = Roster(open_engine(db)).report()[0]
    assert (report["finished"], report["running"], report["jobs_used"]) == (3, 0, 3)


def _sent(db: str, task_ids: list[str]) -> None:
    """Wait until the gateway's queue has sent these jobs (their states, in its database)."""
    engine = open_engine(db)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                states = conn.execute(
                    select(jobs.c.state).where(jobs.c.task_id.in_(task_ids))
                ).scalars().all()
            if len(states) == len(task_ids) and set(states) == {"submitted"}:
                return
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError("the jobs were not sent")


def test_a_submit_cut_short_by_a_kill_becomes_an_unknown_submission(tmp_path):
    from runway_widget.gateway.db.ledger import Ledger
    from tests.gateway_support import demo_gateway

    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    engine = open_engine(db)
    roster = Roster(engine)
    roster.add("pia", Limits(jobs=3))
    [pia] = roster.participants()
    ledger = Ledger(engine)
    ledger.reserve(pia["id"], 5, {"prompt": "in flight"}, sender="killed")  # no answer came
    # an earlier version's reservation, its process killed before the answer; and one of a
    # process of that version still sending (younger than any submit may take)
    now = time.time()
    with engine.begin() as conn:
        for prompt, at in (("old, in flight", 0.0), ("old, still sending", now)):
            conn.execute(
                insert(jobs).values(
                    participant_id=pia["id"],
                    state="reserved",
                    credits=5,
                    request=json.dumps({"prompt": prompt}),
                    created_at=at,
                    updated_at=at,
                )
            )
        conn.execute(update(participants).values(jobs_used=3, credits_used=15, running=3))
    engine.dispose()
    with demo_gateway(tmp_path, db=db) as gateway:
        [row] = gateway.report()
    assert (row["unknown"], row["jobs_used"], row["running"]) == (2, 3, 1)
    requests = sorted(job["request"] for job in row["unknown_submissions"])
    assert "in flight" in requests[0] and "old, in flight" in requests[1]
