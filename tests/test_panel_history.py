"""The panel's history modes, demo clips that outlive their server, and its saved summary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from waiting import wait_for
from widget_helpers import assert_safe_markup, finish, panel_factory

from runway_widget.models import GenerationRequest, Task
from runway_widget.widget.earlier_jobs import ENDED_MESSAGE

OLD_DEMO = "http://127.0.0.1:9"  # a demo server of an earlier kernel: nothing listens


@pytest.fixture
def make_panel(panel_client, tmp_path, clock):
    yield from panel_factory(panel_client, tmp_path, clock)


def _journal_old_demo_jobs(store, clip: Path) -> None:
    """A finished job with a kept clip and an unfinished one, from a stopped demo server."""
    store.record_submission("old-finished", GenerationRequest(prompt="an earlier clip"),
                            OLD_DEMO, demo=True)
    store.record_task(Task("old-finished", "finished", 100, f"{OLD_DEMO}/videos/x.mp4"))
    store.record_download("old-finished", clip)
    store.record_submission("old-running", GenerationRequest(prompt="cut short"), OLD_DEMO,
                            demo=True)
    store.record_task(Task("old-running", "processing", 40))
    store.record_submission("real-job", GenerationRequest(prompt="a paid clip"),
                            "https://api.apiframe.pro")


@pytest.fixture
def kept_clip(make_panel, tmp_path, clock) -> Path:
    """A real MP4 kept by a first panel (as in an earlier kernel)."""
    panel = make_panel()
    panel.form.prompt.value = "a first clip"
    job = panel.submit()
    finish(panel, job, clock)
    wait_for(lambda: job.local_path, "the demo clip to be kept")
    clip = tmp_path / "earlier.mp4"
    clip.write_bytes(Path(job.local_path).read_bytes())
    return clip


def test_a_demo_panel_shows_earlier_demo_jobs_of_any_port_and_ends_orphans(
    make_panel, panel_client, kept_clip
) -> None:
    _journal_old_demo_jobs(panel_client.store, kept_clip)
    panel = make_panel()
    jobs = {job.task_id: job for job in panel.jobs}
    assert {"old-finished", "old-running"} <= set(jobs) and "real-job" not in jobs
    assert jobs["old-running"].state == "failed"
    assert jobs["old-running"].task.message == ENDED_MESSAGE
    assert "ended with its demo backend" in panel.view("old-running").message
    # The kept clip plays, and the row gets its poster.
    view = panel.view("old-finished")
    poster = wait_for(lambda: view.poster, "the poster of the earlier clip")
    assert Image.open(io.BytesIO(poster)).format == "JPEG"
    view.act("open")
    wait_for(lambda: view.video[4:8] == b"ftyp", "the kept clip in the player")
    note = panel.history.note.value
    assert "1 job from other backends not shown: <code>runway-widget history --all</code>" in note
    assert "`" not in note  # a page shows the command as code, not in backticks


def test_session_history_shows_only_what_this_panel_submits(
    make_panel, panel_client, kept_clip
) -> None:
    _journal_old_demo_jobs(panel_client.store, kept_clip)
    panel = make_panel(history="session")
    assert panel.jobs == []
    panel.form.prompt.value = "mine alone"
    job = panel.submit()
    assert [j.task_id for j in panel.jobs] == [job.task_id]
    assert panel.history.note.value == ""
    # Nothing of the others is polled either.
    assert set(panel._handles) == {job.task_id}


def test_voila_means_session_history_and_dashboard(make_panel, monkeypatch) -> None:
    monkeypatch.setenv("VOILA_KERNEL_ID", "a-kernel")
    panel = make_panel()
    assert panel.history_mode == "session" and panel.dashboard is True
    assert make_panel(history="user", dashboard=False).history_mode == "user"
    with pytest.raises(ValueError, match="history must be one of"):
        make_panel(history="everyone")


def test_the_summary_lists_every_job_with_its_poster_and_is_safe(make_panel, clock) -> None:
    panel = make_panel()
    panel.form.prompt.value = 'a kite <img src=x onerror="alert(1)">'
    kite = panel.submit()
    panel.form.prompt.value = "a forbidden clip that fails"
    failing = panel.submit()
    finish(panel, kite, clock)
    finish(panel, failing, clock)
    wait_for(lambda: panel.view(kite).poster, "the poster")
    markup, text = panel._summary.render()
    assert_safe_markup(markup.replace('src="data:image/jpeg;base64,', 'src="https://x/'))
    assert markup.count('src="data:image/jpeg;base64,') == 1
    assert "a kite &lt;img" in markup and "failed: " in markup
    assert "1 finished, 1 failed" in text and kite.local_path in text


def test_progress_ticks_do_not_update_the_summary(make_panel, monkeypatch, clock) -> None:
    panel = make_panel()
    calls = []
    monkeypatch.setattr(panel._summary.view, "changed", lambda: calls.append(1))
    panel.form.prompt.value = "a slow clip"
    job = panel.submit()
    before = len(calls)
    for pct in (10, 20, 30, 40):
        job.advance(pct)
    assert len(calls) == before
    finish(panel, job, clock)
    assert len(calls) > before
