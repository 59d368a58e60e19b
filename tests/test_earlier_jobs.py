"""Which earlier jobs a panel lists: demo jobs of any port, ended demo jobs, history modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from runway_widget.models import GenerationRequest, Task
from runway_widget.store import JobStore
from runway_widget.widget.earlier_jobs import (
    ENDED_MESSAGE,
    demo_task_alive,
    history_mode,
    in_voila,
    select,
    settle_demo_jobs,
)

REAL = "https://api.apiframe.pro"
OLD_DEMO = "http://127.0.0.1:9"  # discard port: nothing listens there
NEW_DEMO = "http://127.0.0.1:40001"


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.jsonl")


def submit(store: JobStore, task_id: str, backend: str, *, demo: bool, status: str | None = None
           ) -> None:
    store.record_submission(task_id, GenerationRequest(prompt=task_id), backend, demo=demo)
    if status:
        store.record_task(Task(task_id, status, 100 if status == "finished" else 40))


def test_the_demo_flag_is_journalled_and_read_back(store: JobStore) -> None:
    submit(store, "d", OLD_DEMO, demo=True)
    submit(store, "r", REAL, demo=False)
    assert '"demo":true' in store.path.read_text().splitlines()[0]
    assert "demo" not in store.path.read_text().splitlines()[1]
    assert {j.task_id: j.demo for j in store.load().jobs} == {"d": True, "r": False}
    assert store.folder == store.path.parent


def test_a_demo_panel_lists_demo_jobs_of_every_port_and_no_real_ones(store: JobStore) -> None:
    submit(store, "old-demo", OLD_DEMO, demo=True, status="finished")
    submit(store, "real", REAL, demo=False, status="finished")
    submit(store, "new-demo", NEW_DEMO, demo=True)
    demo = select(store.load(), backend=NEW_DEMO, demo=True)
    assert [j.task_id for j in demo.jobs] == ["new-demo", "old-demo"] and demo.others == 1
    real = select(store.load(), backend=REAL + "/", demo=False)
    assert [j.task_id for j in real.jobs] == ["real"] and real.others == 2


def test_unfinished_jobs_of_a_gone_demo_server_are_journalled_as_ended(store: JobStore) -> None:
    submit(store, "orphan", OLD_DEMO, demo=True, status="processing")
    submit(store, "alive-elsewhere", "http://127.0.0.1:40002", demo=True, status="processing")
    submit(store, "mine", NEW_DEMO, demo=True, status="processing")
    submit(store, "done", OLD_DEMO, demo=True, status="finished")
    asked = []

    def probe(backend: str, task_id: str) -> bool:
        asked.append(task_id)
        return task_id == "alive-elsewhere"

    jobs = select(store.load(), backend=NEW_DEMO, demo=True).jobs
    kept = settle_demo_jobs(jobs, backend=NEW_DEMO, store=store, probe=probe)
    assert sorted(asked) == ["alive-elsewhere", "orphan"]
    assert [j.task_id for j in kept] == ["done", "mine", "orphan"]
    assert kept[2].status == "failed" and kept[2].message == ENDED_MESSAGE
    # Journalled: the next panel knows without asking.
    again = {j.task_id: j for j in store.load().jobs}
    assert again["orphan"].status == "failed" and again["orphan"].message == ENDED_MESSAGE
    assert again["mine"].status == "processing"
    asked.clear()
    settle_demo_jobs(select(store.load(), backend=NEW_DEMO, demo=True).jobs,
                     backend=NEW_DEMO, store=store, probe=probe)
    assert asked == ["alive-elsewhere"]


def test_probes_stop_after_their_time_budget(store: JobStore) -> None:
    for n in range(5):
        submit(store, f"orphan-{n}", OLD_DEMO, demo=True, status="processing")
    now = [0.0]

    def slow_probe(backend: str, task_id: str) -> bool:
        now[0] += 2.0  # each probe takes 2 s of a 3 s budget
        return True

    jobs = select(store.load(), backend=NEW_DEMO, demo=True).jobs
    kept = settle_demo_jobs(jobs, backend=NEW_DEMO, store=store, probe=slow_probe,
                            clock=lambda: now[0])
    # Two probes answered "alive"; past the budget the rest count as ended, unprobed.
    assert len(kept) == 3 and all(j.message == ENDED_MESSAGE for j in kept)


def test_the_real_probe_against_a_live_and_a_dead_demo_server(demo_client, demo_server) -> None:
    task_id = demo_client.imagine(prompt="probe me", generation_type="text2video")
    assert demo_task_alive(demo_server.base_url, task_id)
    assert not demo_task_alive(demo_server.base_url, "00000000-0000-0000-0000-000000000000")
    assert not demo_task_alive(OLD_DEMO, task_id)


def test_history_mode_defaults_to_session_under_voila_only() -> None:
    assert history_mode(None, {}) == "user"
    assert history_mode(None, {"VOILA_KERNEL_ID": "k"}) == "session"
    assert history_mode(None, {"SERVER_SOFTWARE": "voila/0.5.13"}) == "session"
    assert history_mode("user", {"VOILA_REQUEST_URL": "http://x"}) == "user"
    assert history_mode("session", {}) == "session"
    assert in_voila({"VOILA_SERVER_URL": "http://x"}) and not in_voila({"SERVER_SOFTWARE": "x"})
    with pytest.raises(ValueError, match="history must be one of"):
        history_mode("everyone", {})
