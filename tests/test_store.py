"""The job history: durable, tolerant of damage, safe for threads and processes, secret-free."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import platformdirs
import pytest
from waiting import wait_for

from runway_widget.models import GenerationRequest, Task
from runway_widget.store import JobStore

BACKEND = "http://127.0.0.1:9"
REAL = "https://api.apiframe.pro"


def request(prompt: str = "a lighthouse in a storm", **fields) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, aspect_ratio="16:9", duration=5, **fields)


def raw_lines(store: JobStore) -> list[dict]:
    return [json.loads(line) for line in store.path.read_text("utf-8").splitlines() if line]


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "history" / "jobs.jsonl")


# -- location --------------------------------------------------------------------------------


def test_default_path_follows_runway_widget_home_and_is_created_on_first_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "not-yet"
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(home))
    store = JobStore()
    assert store.path == home / "jobs.jsonl"
    assert not home.exists(), "constructing a store must not touch the disk"
    assert store.load().jobs == []
    assert not home.exists(), "reading an absent history must not create it"

    store.record_submission("t-1", request(), BACKEND)
    assert store.path.is_file()
    assert [job.task_id for job in JobStore().jobs()] == ["t-1"]


def test_default_path_without_override_is_the_user_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNWAY_WIDGET_HOME", raising=False)
    expected = Path(platformdirs.user_data_dir("runway_widget")) / "jobs.jsonl"
    assert JobStore().path == expected


# -- records and folding ---------------------------------------------------------------------


def test_submission_status_and_download_fold_into_one_record(
    store: JobStore, tmp_path: Path
) -> None:
    store.record_submission("t-1", request(), BACKEND)
    store.record_task(Task("t-1", "processing", 40), backend=BACKEND)
    store.record_task(Task("t-1", "finished", 100, video_url=f"{BACKEND}/videos/t-1.mp4"))
    store.record_download("t-1", tmp_path / "clip.mp4")

    job = JobStore(store.path).get("t-1")
    assert job is not None
    assert job.backend == BACKEND
    assert job.request == request().public_payload()
    assert job.prompt == "a lighthouse in a storm"
    assert (job.status, job.percentage) == ("finished", 100)
    assert job.video_url == f"{BACKEND}/videos/t-1.mp4"
    assert job.local_path == str((tmp_path / "clip.mp4").resolve())
    assert job.is_done
    assert job.updated_at >= job.submitted_at > 0

    kinds = [(line["v"], line["kind"]) for line in raw_lines(store)]
    assert kinds == [(1, "submitted"), (1, "status"), (1, "status"), (1, "download")]


def test_a_new_job_is_submitted_until_its_first_update(store: JobStore) -> None:
    store.record_submission("t-1", request(), BACKEND)
    job = store.get("t-1")
    assert job is not None
    assert (job.status, job.percentage, job.is_done) == ("submitted", None, False)
    assert store.get("nope") is None


def test_text_a_server_may_send_that_utf8_cannot_hold_is_kept_exactly(store: JobStore) -> None:
    odd = "t-\ud83c"  # a lone surrogate: valid JSON, not encodable as UTF-8
    store.record_submission(odd, request(prompt="caf\u00e9 \udc00"), BACKEND)
    store.record_task(Task.from_json({"task_id": odd, "status": "processing", "message": "\ud800"}))
    assert store.write_error is None
    assert store.path.read_bytes().decode("utf-8")  # the file stays valid UTF-8
    job = JobStore(store.path).get(odd)
    assert job is not None and job.status == "processing"
    assert job.prompt == "caf\u00e9 \udc00"


def test_jobs_are_newest_first_and_filter_by_backend(store: JobStore) -> None:
    for task_id, backend in [("a", BACKEND), ("b", REAL), ("c", BACKEND + "/")]:
        store.record_submission(task_id, request(task_id), backend)
        time.sleep(0.01)
    assert [job.task_id for job in store.jobs()] == ["c", "b", "a"]
    assert [job.task_id for job in store.jobs(backend=BACKEND)] == ["c", "a"]
    assert [job.task_id for job in store.jobs(backend=REAL)] == ["b"]


def test_status_records_are_compact_and_unchanged_polls_write_nothing(store: JobStore) -> None:
    store.record_submission("t-1", request(), BACKEND)
    for _ in range(3):
        store.record_task(Task("t-1", "processing", 10), backend=BACKEND)
    store.record_task(Task("t-1", "processing", 20), backend=BACKEND)
    store.record_task(Task("t-1", "processing", 20), backend=BACKEND)

    status = [line for line in raw_lines(store) if line["kind"] == "status"]
    assert len(status) == 2
    assert {k for k in status[0] if k not in ("v", "kind", "task_id", "at")} == {
        "status",
        "percentage",
    }
    assert {k for k in status[1] if k not in ("v", "kind", "task_id", "at")} == {"percentage"}


def test_status_for_an_unknown_task_still_creates_a_record(store: JobStore) -> None:
    store.record_task(Task("elsewhere", "processing", 30), backend=REAL)
    job = store.get("elsewhere")
    assert job is not None
    assert (job.backend, job.status, job.percentage, job.request) == (REAL, "processing", 30, {})
    assert job.prompt is None
    assert job.submitted_at > 0


def test_a_restarted_process_does_not_rewrite_what_the_journal_already_says(
    store: JobStore,
) -> None:
    store.record_task(Task("t-1", "processing", 50), backend=BACKEND)
    restarted = JobStore(store.path)
    restarted.load()
    restarted.record_task(Task("t-1", "processing", 50), backend=BACKEND)
    assert len(raw_lines(store)) == 1
    restarted.record_task(Task("t-1", "finished", 100, video_url="https://cdn/x.mp4"))
    assert store.get("t-1").status == "finished"


def test_a_write_failure_is_logged_with_the_task_id_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = JobStore(blocker / "jobs.jsonl")
    with caplog.at_level(logging.ERROR, logger="runway_widget"):
        store.record_submission("paid-task-42", request(), BACKEND)
    assert "paid-task-42" in caplog.text


def test_a_write_failure_is_visible_without_logging(tmp_path: Path) -> None:
    """The package's logger is silent by default: the store itself says it failed."""
    store = JobStore(tmp_path / "jobs.jsonl")
    store.record_submission("t-ok", request(), BACKEND)
    assert not store.write_failed and store.write_error is None
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # unwritable even for root
    broken = JobStore(blocker / "jobs.jsonl")
    broken.record_submission("paid-task-43", request(), BACKEND)
    broken.record_task(Task("paid-task-43", "finished", 100), backend=BACKEND)
    assert broken.write_failed and broken.failed_writes == 2
    assert "paid-task-43" in broken.write_error and str(blocker) in broken.write_error


# -- damage and older versions ---------------------------------------------------------------


def test_torn_last_line_is_reported_and_the_next_record_survives(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.record_submission("t-1", request(), BACKEND)
    store.record_submission("t-2", request("second"), BACKEND)
    with store.path.open("ab") as handle:
        handle.write(b'{"v":1,"kind":"status","task_id":"t-2","sta')

    with caplog.at_level(logging.WARNING, logger="runway_widget"):
        history = JobStore(store.path).load()
    assert sorted(job.task_id for job in history.jobs) == ["t-1", "t-2"]
    assert len(history.skipped) == 1
    assert history.skipped[0].startswith("line 3: ")
    assert "torn" in history.skipped[0]
    assert "line 3" in caplog.text

    store.record_task(Task("t-2", "processing", 60), backend=BACKEND)
    history = JobStore(store.path).load()
    assert len(history.skipped) == 1
    assert history.skipped[0].startswith("line 3: ")
    assert "torn" in history.skipped[0]
    assert JobStore(store.path).get("t-2").percentage == 60


def test_garbage_and_blank_lines_are_reported_by_line_number(store: JobStore) -> None:
    store.record_submission("t-1", request(), BACKEND)
    with store.path.open("ab") as handle:
        handle.write(b"\n")
        handle.write(b"this is not json\n")
        handle.write(b"[1, 2, 3]\n")
        handle.write(b'{"v": 1, "kind": "status", "status": "finished"}\n')
        handle.write(b"\xff\xfe\x00 binary\n")
        handle.write(b"   \n")
    store.record_task(Task("t-1", "finished", 100, video_url="https://cdn/t-1.mp4"))

    history = store.load()
    assert [job.status for job in history.jobs] == ["finished"]
    assert [entry.split(":")[0] for entry in history.skipped] == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    assert "not valid JSON" in history.skipped[0]
    assert "not a JSON object" in history.skipped[1]
    assert "no task_id" in history.skipped[2]
    assert "UTF-8" in history.skipped[3]


NEWER_JOURNAL = """\
{"v": 1, "kind": "submitted", "task_id": "t-2", "backend": "https://api.apiframe.pro", \
"request": {"prompt": "second", "duration": 10}, "submitted_at": 1740900000}
{"v": 2, "kind": "status", "task_id": "t-2", "status": "processing", "percentage": 10, \
"at": 1740900010, "eta_seconds": 12}
{"v": 2, "kind": "thumbnail", "task_id": "t-2", "at": 1740900011}
{"id": "t-3", "status": "finished"}
"""


def test_newer_fields_are_ignored_and_unknown_kinds_reported(store: JobStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(NEWER_JOURNAL, "utf-8")

    history = store.load()
    (job,) = history.jobs
    assert (job.task_id, job.prompt, job.submitted_at) == ("t-2", "second", 1740900000.0)
    assert (job.status, job.percentage, job.updated_at) == ("processing", 10, 1740900010.0)
    assert history.skipped[0].startswith("line 3: unknown record kind 'thumbnail'")
    assert history.skipped[1] == "line 4: no task_id"


ABSURD_NUMBERS = """\
{"v": 1, "kind": "submitted", "task_id": "t-1", "backend": "b", "request": {"prompt": "p"}, \
"submitted_at": 1e400}
{"v": 1, "kind": "status", "task_id": "t-1", "status": "processing", "percentage": Infinity, \
"at": NaN}
{"v": 1, "kind": "status", "task_id": "t-1", "percentage": "1e999", "at": -1e400}
{"v": 1, "kind": "submitted", "task_id": "t-2", "backend": "b", "submitted_at": 99999999999999}
{"v": 1, "kind": "status", "task_id": "t-2", "percentage": %s, "at": 1740900000}
""" % ("9" * 400)


def test_absurd_numbers_in_the_journal_are_treated_as_absent(store: JobStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(ABSURD_NUMBERS, "utf-8")
    history = store.load()
    jobs = {job.task_id: job for job in history.jobs}
    assert (jobs["t-1"].submitted_at, jobs["t-1"].updated_at) == (0.0, 0.0)
    assert (jobs["t-1"].status, jobs["t-1"].percentage) == ("processing", None)
    assert jobs["t-2"].submitted_at == 0.0
    assert jobs["t-2"].percentage is None
    assert history.skipped == []


def test_history_with_absurd_times_prints(store: JobStore, monkeypatch, capsys) -> None:
    from runway_widget.cli.commands import main

    store.path.parent.mkdir(parents=True)
    store.path.write_text(ABSURD_NUMBERS, "utf-8")
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(store.path.parent))
    assert main(["history"]) == 0
    assert "t-1" in capsys.readouterr().out


# -- secrets ---------------------------------------------------------------------------------


def test_no_secret_reaches_the_journal(store: JobStore) -> None:
    store.record_submission(
        "t-1",
        request(webhook_url="https://hooks.example/x", webhook_secret="whsec-DISTINCTIVE-1"),
        BACKEND,
    )
    store.record_submission(
        "t-2",
        {
            "prompt": "from a dict",
            "webhook_secret": "whsec-DISTINCTIVE-2",
            "api_key": "key-DISTINCTIVE-3",
            "Authorization": "key-DISTINCTIVE-4",
            "X-Api-Key": "key-DISTINCTIVE-5",
        },
        BACKEND,
    )
    data = store.path.read_bytes()
    assert b"DISTINCTIVE" not in data
    assert store.get("t-1").request["webhook_url"] == "https://hooks.example/x"
    assert store.get("t-2").request == {"prompt": "from a dict"}


def test_no_secret_reaches_the_journal_through_the_client(tmp_path: Path) -> None:
    from api_server import ApiServer

    from runway_widget.client.apiframe import ApiframeClient

    api_key = "sk-live-DISTINCTIVE-KEY-93f1c2"
    secret = "whsec-DISTINCTIVE-SECRET-4e7b"
    store = JobStore(tmp_path / "jobs.jsonl")
    with (
        ApiServer(api_key=api_key) as api,
        ApiframeClient(
            api_key=api_key, base_url=api.base_url, store=store, requests_per_second=50
        ) as client,
    ):
        task_id = client.imagine(
            prompt="a lighthouse in a storm",
            webhook_url="https://hooks.example/runway",
            webhook_secret=secret,
        )
        api.files["/videos/clip.mp4"] = b"not really an mp4"
        api.add_task(
            task_id,
            {
                "status": "finished",
                "percentage": 100,
                "video_url": f"{api.base_url}/videos/clip.mp4",
            },
        )
        task = client.fetch(task_id)
        store.record_task(task, backend=client.base_url)
        client.download(task, tmp_path / "clip.mp4")
        assert api.requests("/runway-imagine")[0].json["webhook_secret"] == secret

    data = store.path.read_bytes()
    for text in (api_key, secret, api_key[-8:], secret[-8:]):
        assert text.encode() not in data
    job = store.get(task_id)
    assert (job.status, job.local_path) == ("finished", str((tmp_path / "clip.mp4").resolve()))
    assert job.request["webhook_url"] == "https://hooks.example/runway"


# -- concurrency -----------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from runway_widget.models import GenerationRequest
    from runway_widget.store import JobStore

    path, name, go = sys.argv[1], sys.argv[2], sys.argv[3]
    store = JobStore(path)
    request = GenerationRequest(prompt=name * 4000)
    open(go + "-" + name, "w").close()  # ready: both start writing at once
    while not os.path.exists(go):
        time.sleep(0.002)
    for i in range(500):
        store.record_submission(f"{name}-{i}", request, "http://127.0.0.1:9")
    """
)


def test_two_processes_appending_at_once_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    go = tmp_path / "go"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(go)])
        for name in ("a", "b")
    ]
    wait_for(lambda: all((tmp_path / f"go-{name}").exists() for name in "ab"), "both writers")
    go.touch()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 1000
    history = JobStore(path).load()
    assert history.skipped == []
    ids = {job.task_id for job in history.jobs}
    assert ids == {f"{name}-{i}" for name in "ab" for i in range(500)}
    assert all(len(job.prompt) == 4000 for job in history.jobs)
    owners = [record["task_id"][0] for record in records]
    switches = sum(1 for x, y in itertools.pairwise(owners) if x != y)
    print(f"writers took turns {switches} times")


def test_threads_sharing_or_not_sharing_a_store_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    shared = JobStore(path)
    start = threading.Barrier(8)

    def work(n: int) -> None:
        store = shared if n % 2 else JobStore(path)
        start.wait()
        for i in range(100):
            store.record_submission(f"{n}-{i}", request("p" * 2000), BACKEND)
            store.record_task(Task(f"{n}-{i}", "processing", i), backend=BACKEND)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    history = JobStore(path).load()
    assert history.skipped == []
    assert len(history.jobs) == 800
    assert len(raw_lines(shared)) == 1600
    assert all(job.status == "processing" for job in history.jobs)


# -- durability through the real client ------------------------------------------------------

SUBMIT_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.store import JobStore

    base_url, path = sys.argv[1], sys.argv[2]
    client = ApiframeClient(api_key=os.environ["TEST_API_KEY"], base_url=base_url,
                            store=JobStore(path))
    task_id = client.imagine(prompt="a lighthouse in a storm", aspect_ratio="16:9",
                             webhook_url="https://hooks.example/runway",
                             webhook_secret=os.environ["TEST_WEBHOOK_SECRET"])
    sys.stdout.write(task_id + "\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_task_id_survives_sigkill_right_after_imagine(demo_server, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    env = {
        **os.environ,
        "TEST_API_KEY": demo_server.api_key,
        "TEST_WEBHOOK_SECRET": "whsec-SIGKILL-DISTINCTIVE",
    }
    child = subprocess.run(
        [sys.executable, "-c", SUBMIT_AND_DIE, demo_server.base_url, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    task_id = child.stdout.strip()
    assert task_id

    job = JobStore(path).get(task_id)
    assert job is not None
    assert job.backend == demo_server.base_url
    assert job.prompt == "a lighthouse in a storm"
    assert b"whsec-SIGKILL-DISTINCTIVE" not in path.read_bytes()
