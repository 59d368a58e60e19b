"""After a restart, the journal alone is enough to follow every unfinished paid job to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runway_widget.models import Task
from runway_widget.store import JobStore

OTHER_BACKEND = "https://api.apiframe.pro"

SUBMIT_THEN_CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.store import JobStore

    base_url, api_key, path = sys.argv[1], sys.argv[2], sys.argv[3]
    client = ApiframeClient(api_key=api_key, base_url=base_url, store=JobStore(path))
    ids = [client.imagine(prompt=f"a lighthouse in a storm, take {n}") for n in range(3)]
    sys.stdout.write(" ".join(ids) + "\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture
def slow_demo(clock):
    """Jobs on the fake clock: still running after the crash however long it takes, then run
    to their end as fast as the tracker's polls and the renders go."""
    from runway_widget.demo import DemoServer

    with DemoServer(job_seconds=20.0, clock=clock) as server:
        yield server


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_unfinished_jobs_of_the_same_backend_resume_to_completion(
    slow_demo, clock, tmp_path: Path
) -> None:
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.tracking.tracker import TaskTracker

    path = tmp_path / "jobs.jsonl"
    before = JobStore(path)
    before.record_task(Task("elsewhere-1", "processing", 20), backend=OTHER_BACKEND)
    before.record_task(
        Task("done-1", "finished", 100, video_url=f"{slow_demo.base_url}/videos/done-1.mp4"),
        backend=slow_demo.base_url,
    )

    crashed = subprocess.run(
        [sys.executable, "-c", SUBMIT_THEN_CRASH, slow_demo.base_url, slow_demo.api_key, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    submitted = crashed.stdout.split()
    assert len(submitted) == 3

    # A fresh process state: new store, client and tracker; only the journal carries over.
    store = JobStore(path)
    client = ApiframeClient(
        api_key=slow_demo.api_key,
        base_url=slow_demo.base_url,
        store=store,
        requests_per_second=50,
    )
    tracker = TaskTracker(client, clock=clock, wait=clock.wait)
    try:
        pending = [job for job in store.jobs(backend=client.base_url) if not job.is_done]
        assert sorted(job.task_id for job in pending) == sorted(submitted)
        assert all(job.status == "submitted" for job in pending)

        handles = [tracker.track(job.task_id) for job in pending]
        with clock.driving():
            finished = [handle.wait(timeout=60) for handle in handles]
    finally:
        tracker.stop()
        client.close()

    assert all(task.is_finished and task.video_url for task in finished)
    assert tracker.latest("elsewhere-1") is None
    after = {job.task_id: job for job in JobStore(path).jobs()}
    for task_id in submitted:
        assert after[task_id].status == "finished"
        assert after[task_id].video_url == f"{slow_demo.base_url}/videos/{task_id}.mp4"
        assert after[task_id].prompt.startswith("a lighthouse in a storm, take ")
    assert after["elsewhere-1"].status == "processing"
