"""The ``runway-widget`` command: in-process through ``main()``, and once as a real process."""

from __future__ import annotations

import _thread
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_server import TEST_API_KEY, ApiServer, Reply, error

from runway_widget.cli.commands import DEMO_NOTICE, main
from runway_widget.models import GenerationRequest, video_filename
from runway_widget.store import JobStore

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 400


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """A fresh history folder, and the working directory for default output names."""
    folder = tmp_path / "home"
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(folder))
    monkeypatch.chdir(tmp_path)
    return folder


@pytest.fixture
def api(home, monkeypatch) -> Iterator[ApiServer]:
    with ApiServer() as server:
        monkeypatch.setenv("APIFRAME_BASE_URL", server.base_url)
        monkeypatch.setenv("APIFRAME_API_KEY", TEST_API_KEY)
        monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "0.01")
        yield server


@pytest.fixture
def demo_seconds(monkeypatch) -> None:
    """``--demo`` jobs of half a second. The process's shared demo backend may have started
    before this test (with another job time), and others may still follow its tasks: it is
    set for the test and set back, never stopped."""
    from runway_widget.demo import shared_demo_server

    monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "0.1")
    monkeypatch.setattr(shared_demo_server(), "job_seconds", 0.5)


def script_job(
    api: ApiServer, task_id: str = "cli-1", *, fail: str | None = None, stages: bool = False
) -> None:
    """The next submission gets ``task_id``, which runs briefly then finishes (or fails):
    one poll sees it running, the next its end (both within the client's burst of reads);
    with ``stages``, staged and two steps of progress come first."""
    api.script("/runway-imagine", Reply(json={"task_id": task_id}))
    end = (
        {"status": "failed", "message": fail}
        if fail
        else {
            "status": "finished",
            "percentage": "100",
            "video_url": f"{api.base_url}/videos/{task_id}.mp4",
        }
    )
    early = [{"status": "staged"}, {"status": "processing", "percentage": "30"}] if stages else []
    api.add_task(task_id, *early, {"status": "processing", "percentage": "70"}, end)
    api.files[f"/videos/{task_id}.mp4"] = VIDEO


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def assert_one_clear_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    line = last_line(err)
    assert line.startswith("error: ")
    for needle in needles:
        assert needle in line


# -- generate -------------------------------------------------------------------------------


def test_generate_submits_every_option_waits_and_saves(api, home, tmp_path, capsys):
    script_job(api, stages=True)
    out = tmp_path / "videos" / "storm.mp4"
    code = main(
        [
            "generate",
            "a lighthouse in a storm",
            "--type", "image2video",
            "--image-url", "https://example.com/a.png",
            "--end-image-url", "https://example.com/b.png",
            "--model", "gen3",
            "--duration", "10",
            "--flip",
            "--webhook-url", "https://hooks.example.com/runway",
            "--webhook-secret", "whsec-cli-Secret",
            "--out", str(out),
            "--timeout", "30",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(out)
    assert out.read_bytes() == VIDEO
    assert "Submitted task cli-1" in captured.err
    assert "100%" in captured.err
    assert api.requests("/runway-imagine")[0].json == {
        "prompt": "a lighthouse in a storm",
        "generation_type": "image2video",
        "image_url": "https://example.com/a.png",
        "end_image_url": "https://example.com/b.png",
        "model": "gen3",
        "duration": 10,
        "flip": True,
        "webhook_url": "https://hooks.example.com/runway",
        "webhook_secret": "whsec-cli-Secret",
    }
    job = JobStore().get("cli-1")
    assert job.status == "finished" and job.local_path == str(out.resolve())
    assert job.backend == api.base_url
    journal = (home / "jobs.jsonl").read_text()
    assert "whsec-cli-Secret" not in journal and TEST_API_KEY not in journal


def test_generate_text2video_options_and_default_file_name(api, tmp_path, capsys):
    script_job(api, "29e983ca-aaaa")
    code = main(["generate", "Waves at dusk", "--aspect-ratio", "9:16", "--duration", "5"])
    assert code == 0
    expected = tmp_path / video_filename("Waves at dusk", "29e983ca-aaaa")
    assert expected.name == "waves-at-dusk-29e983ca.mp4"
    assert capsys.readouterr().out.strip() == expected.name
    assert expected.read_bytes() == VIDEO
    assert api.requests("/runway-imagine")[0].json == {
        "prompt": "Waves at dusk",
        "generation_type": "text2video",
        "aspect_ratio": "9:16",
        "duration": 5,
    }


def test_generate_prints_the_task_id_before_waiting(api, capsys):
    script_job(api, fail="the prompt was refused by moderation")
    code = main(["generate", "forbidden thing"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.index("Submitted task cli-1") < err.index("error:")
    assert_one_clear_error(err, "task cli-1 failed", "refused by moderation")
    job = JobStore().get("cli-1")
    assert job.status == "failed" and job.message == "the prompt was refused by moderation"


def test_generate_timeout_keeps_the_job_and_the_hint_can_be_followed(api, tmp_path, capsys):
    api.script("/runway-imagine", Reply(json={"task_id": "slow-1"}))
    api.add_task("slow-1", {"status": "processing", "percentage": "5"})
    code = main(["generate", "slow", "--timeout", "0.2"])
    assert code == 1
    assert_one_clear_error(
        capsys.readouterr().err,
        "task slow-1 goes on (processing 5%)",
        "`runway-widget wait slow-1`, then `runway-widget download slow-1`",
    )
    assert JobStore().get("slow-1").status == "processing"

    url = f"{api.base_url}/videos/slow-1.mp4"
    api.add_task(
        "slow-1",
        {"status": "processing", "percentage": "60"},
        {"status": "finished", "percentage": "100", "video_url": url},
    )
    api.files["/videos/slow-1.mp4"] = VIDEO
    assert main(["wait", "slow-1", "--timeout", "30"]) == 0
    assert capsys.readouterr().out.splitlines() == ["slow-1: finished", f"video: {url}"]
    assert main(["download", "slow-1"]) == 0
    saved = tmp_path / capsys.readouterr().out.strip()
    assert saved.name == "slow-slow1.mp4"  # named from the prompt in the history
    assert saved.read_bytes() == VIDEO
    assert JobStore().get("slow-1").local_path == str(saved.resolve())


def test_ctrl_c_while_waiting_exits_130_and_names_the_task(api, capsys):
    api.script("/runway-imagine", Reply(json={"task_id": "long-1"}))
    api.add_task("long-1", {"status": "processing", "percentage": "5"})
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    try:
        code = main(["generate", "long", "--timeout", "30"])
    finally:
        timer.cancel()
    err = capsys.readouterr().err
    assert code == 130
    assert "Traceback" not in err
    assert "long-1 goes on" in last_line(err) and "runway-widget wait long-1" in last_line(err)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["generate", "x", "--duration", "7"], ["duration must be the integer 5 or 10"]),
        (["generate", "", "--type", "image2video"], ["prompt is required", "image_url"]),
        (["generate", "x", "--aspect-ratio", "5:4", "--model", "gen9"], ["aspect_ratio", "model"]),
        (["generate", "x", "--image-url", "ftp://x/a.png"], ["image_url is only for image2video"]),
    ],
)
def test_invalid_requests_exit_2_before_sending(api, capsys, argv, needles):
    assert main(argv) == 2
    assert_one_clear_error(capsys.readouterr().err, "invalid request", *needles)
    assert api.count() == 0


@pytest.mark.parametrize(
    "argv",
    [[], ["generate"], ["generate", "x", "--duration", "five"], ["fetch"], ["nope"]],
)
def test_usage_errors_exit_2(api, capsys, argv):
    assert main(argv) == 2
    assert "usage: runway-widget" in capsys.readouterr().err
    assert api.count() == 0


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("generate", "fetch", "wait", "download", "account", "history", "demo-server"):
        assert command in out
    assert main(["generate", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--type", "--image-url", "--end-image-url", "--video-url", "--aspect-ratio",
                 "--model", "--duration", "--flip", "--webhook-url", "--webhook-secret",
                 "--demo", "--out", "--force", "--timeout"):  # fmt: skip
        assert flag in out


def test_missing_key_points_to_the_demo(home, monkeypatch, capsys):
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    assert main(["account"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "APIFRAME_API_KEY", "--demo")


def test_refused_key_is_one_line_without_the_key(api, monkeypatch, capsys):
    monkeypatch.setenv("APIFRAME_API_KEY", "sk-cli-wrong-key-9876")
    assert main(["generate", "x"]) == 1
    captured = capsys.readouterr()
    assert_one_clear_error(captured.err, "was refused", "check APIFRAME_API_KEY", "…9876")
    assert "sk-cli-wrong-key" not in captured.err + captured.out


def test_unknown_submission_outcome_is_reported(api, capsys):
    api.script("/runway-imagine", Reply(drop=True))
    assert main(["generate", "x"]) == 1
    assert_one_clear_error(
        capsys.readouterr().err, "check `runway-widget history` before resubmitting"
    )


# -- fetch, account ----------------------------------------------------------------------------


def test_fetch_prints_and_journals_the_task(api, capsys):
    api.add_task("t-9", {"status": "processing", "percentage": "45"})
    assert main(["fetch", "t-9"]) == 0
    assert capsys.readouterr().out.strip() == "t-9: processing 45%"
    job = JobStore().get("t-9")
    assert (job.status, job.percentage, job.backend) == ("processing", 45, api.base_url)


def test_fetch_finished_and_failed_and_json(api, capsys):
    url = f"{api.base_url}/videos/t-1.mp4"
    api.add_task("t-1", {"status": "finished", "percentage": "100", "video_url": url})
    api.add_task("t-2", {"status": "failed", "error": "out of credits"})
    assert main(["fetch", "t-1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["t-1: finished", f"video: {url}"]
    assert main(["fetch", "t-2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["t-2: failed", "message: out of credits"]
    assert main(["fetch", "t-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "task_id": "t-1",
        "task_type": "runway",
        "status": "finished",
        "percentage": "100",
        "video_url": url,
    }


def test_fetch_unknown_task(api, capsys):
    assert main(["fetch", "ghost"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "ghost", "unknown to the server")


def test_account(api, capsys):
    assert main(["account"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "email: someone@example.com",
        "plan: basic",
        "credits: 420",
        "total_images: 7",
    ]
    assert main(["account", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api.account_info


def test_server_errors_are_one_line(api, capsys):
    api.script("/account", error(503, "maintenance", **{"Retry-After": "600"}))
    assert main(["account"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "HTTP 503", "maintenance")
    assert api.count("/account") == 1


# -- history ----------------------------------------------------------------------------------


def test_history_newest_first_recent_then_all_then_json(home, capsys):
    store = JobStore()
    for i in range(25):
        store.record_submission(f"job-{i:02d}", GenerationRequest(prompt=f"prompt {i}"), "b")
    assert main(["history"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 20
    assert "job-24" in lines[0] and "prompt 24" in lines[0] and "submitted" in lines[0]
    assert "job-05" in lines[-1]
    assert "5 older jobs not shown: add --all" in captured.err
    assert main(["history", "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 25
    assert main(["history", "--all", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [job["task_id"] for job in jobs][:2] == ["job-24", "job-23"]
    assert jobs[0]["request"] == {"prompt": "prompt 24", "generation_type": "text2video"}


def test_history_reports_skipped_lines_and_empty_history(home, capsys):
    assert main(["history"]) == 0
    assert "No jobs yet" in capsys.readouterr().err
    store = JobStore()
    store.record_submission("ok-1", GenerationRequest(prompt="kept"), "b")
    with open(store.path, "a", encoding="utf-8") as journal:
        journal.write("this is not json\n")
    assert main(["history"]) == 0
    captured = capsys.readouterr()
    assert "ok-1" in captured.out
    assert "1 line of" in captured.err and "could not be read" in captured.err


# -- as a real process ------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runway_widget.cli.commands", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_as_a_subprocess_against_a_local_server(api, home, tmp_path):
    script_job(api, "proc-1")
    env = {**os.environ}
    result = run_cli("generate", "a lighthouse", "--duration", "5", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = tmp_path / result.stdout.strip()
    assert saved.name == "a-lighthouse-proc1.mp4"
    assert saved.read_bytes() == VIDEO
    assert "Submitted task proc-1" in result.stderr
    failed = run_cli("fetch", "ghost", env=env, cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert_one_clear_error(failed.stderr, "ghost")
    history = run_cli("history", "--json", env=env, cwd=tmp_path)
    assert json.loads(history.stdout)[0]["local_path"] == str(saved.resolve())


# -- the demo backend -------------------------------------------------------------------------


def test_generate_on_the_demo_backend(home, tmp_path, demo_seconds, capsys):
    code = main(["generate", "a lighthouse in a storm", "--demo", "--out", "demo.mp4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.splitlines()[0] == DEMO_NOTICE
    assert (tmp_path / "demo.mp4").read_bytes()[4:8] == b"ftyp"
    assert JobStore().jobs()[0].status == "finished"


def test_missing_demo_libraries_is_one_clear_line(home, tmp_path):
    blocked = "import sys; sys.modules['av'] = None; "
    code = "from runway_widget.cli import main; sys.exit(main(['generate', 'x', '--demo']))"
    result = subprocess.run(
        [sys.executable, "-c", blocked + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert_one_clear_error(result.stderr, "pip install av numpy Pillow")


def test_demo_server_runs_until_ctrl_c(home, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "runway_widget.cli.commands", "demo-server", "--job-seconds", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("Demo backend running at http://127.0.0.1:")
        base_url = first.rsplit(" ", 1)[-1].strip()
        assert f"APIFRAME_BASE_URL={base_url}" in process.stdout.readline()
        assert "APIFRAME_API_KEY=runway-widget-demo-key" in process.stdout.readline()
        env = {**os.environ, "APIFRAME_BASE_URL": base_url}
        env["APIFRAME_API_KEY"] = "runway-widget-demo-key"
        account = run_cli("account", "--json", env=env, cwd=tmp_path)
        assert account.returncode == 0, account.stderr
        assert "credits" in json.loads(account.stdout)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- where the clip goes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "out", "needles"),
    [
        (lambda d: (d / "taken.mp4").write_bytes(b"1"), "taken.mp4", ["already exists", "--force"]),
        (lambda d: (d / "folder").mkdir(), "folder", ["is a folder", "folder/clip.mp4"]),
        (lambda d: (d / "afile").write_text("x"), "afile/clip.mp4", ["afile is a file"]),
        (lambda d: (d / "afile").write_text("x"), "afile/deeper/clip.mp4", ["afile is a file"]),
        (lambda d: None, "/proc/clip.mp4", ["cannot write in /proc"]),
    ],
)  # fmt: skip
def test_a_bad_out_is_refused_before_anything_is_sent(api, tmp_path, capsys, make, out, needles):
    make(tmp_path)
    assert main(["generate", "x", "--out", out]) == 2
    assert_one_clear_error(capsys.readouterr().err, *needles)
    assert api.count() == 0
    if out == "taken.mp4":
        assert (tmp_path / out).read_bytes() == b"1"


def test_force_replaces_an_existing_out_and_a_new_folder_is_made(api, tmp_path, capsys):
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    script_job(api)
    assert main(["generate", "x", "--out", "taken.mp4", "--force"]) == 0
    assert (tmp_path / "taken.mp4").read_bytes() == VIDEO
    script_job(api, "cli-2")
    assert main(["generate", "x", "--out", "new/folders/clip.mp4"]) == 0
    assert (tmp_path / "new/folders/clip.mp4").read_bytes() == VIDEO


def finishing(api: ApiServer, task_id: str, side_effect) -> Reply:
    """A /fetch reply that finishes ``task_id`` and, as it is read, changes the disk."""

    def reply(seen):
        side_effect()
        return {
            "task_id": task_id,
            "status": "finished",
            "percentage": "100",
            "video_url": f"{api.base_url}/videos/{task_id}.mp4",
        }

    return Reply(json=reply)


def test_a_file_that_appears_during_the_job_is_never_overwritten(api, tmp_path, capsys):
    target = tmp_path / "clip.mp4"
    script_job(api)
    api.script("/fetch", finishing(api, "cli-1", lambda: target.write_bytes(b"mine")))
    assert main(["generate", "x", "--out", "clip.mp4"]) == 0
    captured = capsys.readouterr()
    assert target.read_bytes() == b"mine"
    assert captured.out.strip() == "clip-1.mp4"
    assert (tmp_path / "clip-1.mp4").read_bytes() == VIDEO
    assert "clip.mp4 appeared meanwhile and is kept; saving to clip-1.mp4" in captured.err


def test_a_failed_save_after_the_job_keeps_the_clip_and_says_where(api, home, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    script_job(api)

    def block_the_folder():
        folder.rmdir()
        folder.write_text("now a file")

    api.script("/fetch", finishing(api, "cli-1", block_the_folder))
    assert main(["generate", "x", "--out", "out/clip.mp4"]) == 0
    captured = capsys.readouterr()
    kept = Path(captured.out.strip())
    assert kept == home / "clips" / "clip.mp4"
    assert kept.read_bytes() == VIDEO
    assert "could not save to out/clip.mp4" in captured.err
    assert f"the clip is kept at {kept}" in captured.err
    assert JobStore().get("cli-1").local_path == str(kept)


def test_a_download_that_fails_says_how_to_try_again(api, capsys):
    script_job(api)
    del api.files["/videos/cli-1.mp4"]
    assert main(["generate", "x", "--out", "clip.mp4"]) == 1
    assert_one_clear_error(
        capsys.readouterr().err, "the clip stays on the server", "runway-widget download cli-1"
    )


def test_download_of_an_unfinished_or_failed_task(api, capsys):
    api.add_task("run-1", {"status": "processing", "percentage": "40"})
    api.add_task("bad-1", {"status": "failed", "message": "no luck"})
    assert main(["download", "run-1"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "processing 40%", "runway-widget wait run-1")
    assert main(["download", "bad-1"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "task bad-1 failed: no luck")


def test_wait_for_a_failed_task_and_as_json(api, capsys):
    api.add_task("bad-1", {"status": "processing"}, {"status": "failed", "message": "no luck"})
    assert main(["wait", "bad-1"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "task bad-1 failed: no luck")
    api.add_task("ok-1", {"status": "finished", "percentage": 100, "video_url": "https://x/v.mp4"})
    assert main(["wait", "ok-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["video_url"] == "https://x/v.mp4"


# -- numbers and settings, checked first ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["generate", "x", "--timeout", "0"], "--timeout must be a positive number"),
        (["generate", "x", "--timeout", "-5"], "--timeout must be a positive number"),
        (["generate", "x", "--timeout", "nan"], "--timeout must be a positive number"),
        (["wait", "t-1", "--timeout", "0"], "--timeout must be a positive number"),
        (["demo-server", "--job-seconds", "-1"], "--job-seconds must be 0 or more"),
        (["demo-server", "--job-seconds", "inf"], "--job-seconds must be 0 or more"),
        (["demo-server", "--port", "70000"], "--port must be between 0 and 65535"),
        (["demo-server", "--port", "-1"], "--port must be between 0 and 65535"),
    ],
)
def test_out_of_range_numbers_are_one_line_before_anything_happens(api, capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert_one_clear_error(err, needle)
    assert api.count() == 0


@pytest.mark.parametrize("value", ["fast", "-3", "nan", "1e999"])
@pytest.mark.parametrize("argv", [["generate", "x", "--demo"], ["demo-server"]])
def test_a_bad_demo_seconds_setting_is_refused_before_submitting(
    home, monkeypatch, capsys, argv, value
):
    monkeypatch.setenv("RUNWAY_WIDGET_DEMO_SECONDS", value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert_one_clear_error(err, "RUNWAY_WIDGET_DEMO_SECONDS", "not a number of seconds")
    assert JobStore().jobs() == []


def test_demo_server_on_a_taken_port_is_one_line(home, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo-server", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert_one_clear_error(err, f"127.0.0.1:{port}", "the port is taken", "--port")


# -- tasks of a demo backend that has ended -----------------------------------------------------


@pytest.fixture
def old_demo_job(home) -> str:
    JobStore().record_submission(
        "demo-old-1", GenerationRequest(prompt="gone"), "http://127.0.0.1:9", demo=True
    )
    return "demo-old-1"


@pytest.mark.parametrize("command", ["fetch", "wait", "download"])
@pytest.mark.parametrize("flags", [[], ["--demo"]])
def test_a_task_of_an_ended_demo_backend_says_so(old_demo_job, monkeypatch, capsys, command, flags):
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    assert main([command, old_demo_job, *flags]) == 1
    err = capsys.readouterr().err
    assert_one_clear_error(err, "demo-old-1", "demo backend (http://127.0.0.1:9) that has ended")
    assert "unknown to the server" not in err


def test_an_ended_demo_task_is_also_recognised_by_a_live_backend(api, old_demo_job, capsys):
    assert main(["fetch", old_demo_job]) == 1
    assert_one_clear_error(capsys.readouterr().err, "that has ended")


def test_demo_flag_on_a_task_it_cannot_know(api, capsys):
    assert main(["fetch", "never-seen", "--demo"]) == 1
    assert_one_clear_error(capsys.readouterr().err, "never-seen", "each command starts a new")
    JobStore().record_submission("real-1", GenerationRequest(prompt="p"), api.base_url)
    assert main(["fetch", "real-1", "--demo"]) == 1
    assert_one_clear_error(
        capsys.readouterr().err, f"task real-1 was submitted to {api.base_url}", "drop --demo"
    )


# -- terminal output is inert ---------------------------------------------------------------------

HOSTILE = (
    "\x1b[2J\x1b]0;pwned\x07\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\x9b31m\r\u202e"
)


def assert_inert(text: str, *, shown: bool = True) -> None:
    """No raw control character; and, as shown text, no leftover of an escape sequence."""
    for bad in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
        assert bad not in text, repr(text)
    for leftover in ("pwned", "evil.example") if shown else ():
        assert leftover not in text, repr(text)


def test_server_text_never_reaches_the_terminal_raw(api, capsys):
    api.add_task(
        "t-x",
        {
            "status": "processing" + HOSTILE,
            "percentage": "10",
            "video_url": "https://cdn.example/v.mp4" + HOSTILE,
            "message": "careful" + HOSTILE + "\nsecond line",
        },
    )
    assert main(["fetch", "t-x"]) == 0
    captured = capsys.readouterr()
    assert_inert(captured.out + captured.err)
    assert "t-x: processingclick 10%" in captured.out
    assert "message: carefulclick second line" in captured.out
    assert main(["fetch", "t-x", "--json"]) == 0
    captured = capsys.readouterr()
    assert_inert(captured.out, shown=False)
    assert json.loads(captured.out)["message"].startswith("careful\x1b[2J")  # data kept, escaped

    api.account_info = {"email": "a@b" + HOSTILE, "plan": HOSTILE, "credits": 1}
    assert main(["account"]) == 0
    captured = capsys.readouterr()
    assert_inert(captured.out + captured.err)
    assert main(["account", "--json"]) == 0
    assert_inert(capsys.readouterr().out, shown=False)

    assert main(["history"]) == 0
    captured = capsys.readouterr()
    assert_inert(captured.out + captured.err)


def test_hostile_task_ids_and_failure_messages_are_inert(api, capsys):
    task_id = "id" + HOSTILE
    api.script("/runway-imagine", Reply(json={"task_id": task_id}))
    api.add_task(task_id, {"status": "failed", "message": "boom" + HOSTILE})
    assert main(["generate", "x"]) == 1
    captured = capsys.readouterr()
    assert_inert(captured.out + captured.err.replace("\r", "\n"))  # the bar's own \r are fine
    assert "Submitted task idclick" in captured.err
    assert "boomclick" in last_line(captured.err)
    api.script("/account", error(400, "down" + HOSTILE))
    assert main(["account"]) == 2
    captured = capsys.readouterr()
    assert_inert(captured.err)


# -- local images --------------------------------------------------------------------------------


def test_a_local_image_is_uploaded_for_image2video(api, tmp_path, capsys):
    from runway_widget.demo.samples import sample_path

    frame = tmp_path / "frame.png"
    frame.write_bytes(sample_path("lighthouse.png").read_bytes())
    script_job(api)
    code = main(
        ["generate", "push in", "--type", "image2video", "--image-url", str(frame),
         "--end-image-url", "https://example.com/b.png", "--out", "clip.mp4"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    uploads = api.requests("/upload")
    assert len(uploads) == 1 and b"\x89PNG" in uploads[0].body
    sent = api.requests("/runway-imagine")[0].json
    assert sent["image_url"].startswith(f"{api.base_url}/uploads/")
    assert sent["end_image_url"] == "https://example.com/b.png"


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--image-url", "no/such/frame.png"], ["--image-url no/such/frame.png", "no such image"]),
        (["--image-url", "."], ["--image-url .", "no such image file"]),
        (["--end-image-url", "no-such.png", "--image-url", "https://x/a.png"], ["--end-image-url"]),
    ],
)
def test_a_bad_local_image_is_refused_before_anything_is_sent(api, tmp_path, capsys, argv, needles):
    assert main(["generate", "x", "--type", "image2video", *argv]) == 2
    assert_one_clear_error(capsys.readouterr().err, *needles)
    assert api.count("/runway-imagine") == 0


def test_a_local_image_with_other_request_errors_uploads_nothing(api, tmp_path, capsys):
    (tmp_path / "frame.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    assert main(["generate", "x", "--image-url", "frame.png"]) == 2  # text2video: no image
    assert_one_clear_error(capsys.readouterr().err, "image_url is only for image2video")
    assert api.count() == 0


def test_the_readme_image2video_line_runs_offline_on_the_demo(
    home, tmp_path, monkeypatch, demo_seconds, capsys
):
    """The README's image2video command, as written, from a clone's root: a local sample."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    line = next(ln for ln in readme.splitlines() if "generate" in ln and "image2video" in ln)
    argv = shlex.split(line.split("#")[0])
    assert argv[0] == "runway-widget" and "--demo" in argv
    image = argv[argv.index("--image-url") + 1]
    assert not image.startswith(("http://", "https://")) and (root / image).is_file()
    monkeypatch.chdir(root)
    out = tmp_path / "push-in.mp4"
    code = main([*argv[1:], "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.read_bytes()[4:8] == b"ftyp"
    job = JobStore().jobs()[0]
    assert job.request["generation_type"] == "image2video"
    assert "/uploads/" in job.request["image_url"]


def test_a_history_that_cannot_be_written_is_a_visible_warning(api, tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the history folder should be")
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(blocked))
    script_job(api)
    assert main(["generate", "x", "--out", "clip.mp4"]) == 0
    err = capsys.readouterr().err
    assert "warning: could not save" in err and "cli-1" in err and str(blocked) in err
    assert err.count("warning:") == 1  # once, though every step of the job failed to write
    assert "Traceback" not in err
    assert (tmp_path / "clip.mp4").read_bytes() == VIDEO
