"""The panel driven the way a user drives it, against the demo-like fake service in memory:
jobs of 20 s on the fake clock that end with a real clip. The demo backend itself appears
where the panel must find it (no key) or know it (a hand-built demo client)."""

from __future__ import annotations

import threading
from pathlib import Path

import ipywidgets as widgets
import pytest
from fake_api import Reply, error
from waiting import wait_for
from widget_helpers import (
    assert_safe_markup,
    finish,
    is_mp4,
    panel_factory,
    playing_bytes,
    previewed,
    shown_html,
)

from runway_widget.errors import ValidationError
from runway_widget.models import GenerationRequest, Task, video_filename
from runway_widget.store import JobStore
from runway_widget.widget import history as history_module

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def make_panel(panel_client, tmp_path, clock):
    yield from panel_factory(panel_client, tmp_path, clock)


def imagine_count(api) -> int:
    return api.count("/runway-imagine")


def test_generate_shows_progress_then_the_video(make_panel, demo_like, clock):
    panel = make_panel()
    panel.form.prompt.value = "a lighthouse in a storm"
    panel.form.generate.click()
    assert len(panel.jobs) == 1
    job = panel.jobs[0]
    view = panel.view(job)
    assert panel.job_list.box.children == (view,)
    assert not view.opened and view.video == b""  # no empty player on the page
    seen: list[float] = []
    view.observe(lambda change: seen.append(change["new"]), names="progress")
    finish(panel, job, clock)
    assert job.state == "finished"
    assert seen == sorted(seen), "the bar went backwards"
    assert any(0 < value < 100 for value in seen), f"no progress between 0 and 100: {seen}"
    assert view.progress == 100 and view.status == "finished"
    assert view.label.startswith("finished · ")
    # The demo's URL is the kernel's loopback: a browser elsewhere could not open it, so the
    # view plays the bytes and offers no link to it.
    assert view.link == "" and view.video_src == ""
    assert "1 finished" in panel.header.counts.value
    assert "0 running" in panel.header.counts.value
    assert imagine_count(demo_like) == 1


def test_newest_job_is_on_top(make_panel, clock):
    panel = make_panel()
    panel.form.prompt.value = "first"
    one = panel.submit()
    panel.form.prompt.value = "second"
    two = panel.submit()
    assert panel.jobs == [two, one]
    assert panel.view(two).layout.order == "0" and panel.view(one).layout.order == "1"
    # Views are appended, never reordered in the box (that would restart their players).
    assert panel.job_list.box.children == (panel.view(one), panel.view(two))
    for job in (one, two):
        finish(panel, job, clock, plays=False)
    assert panel.jobs == [two, one]


def test_finished_job_collapses_and_opens_again_holding_bytes_only_when_open(make_panel, clock):
    panel = make_panel()
    panel.form.prompt.value = "a clip to open and close"
    job = panel.submit()
    view = panel.view(job)
    finish(panel, job, clock)  # a job finishing while the panel watches opens by itself
    view.act("close")
    assert not view.opened and view.video == b"" and view.video_src == ""
    view.act("open")
    wait_for(lambda: playing_bytes(view), "the player to get its bytes again")


def test_one_finished_job_opens_by_itself_and_at_most_a_few_stay_open(make_panel, clock):
    from runway_widget.widget.media.players import MAX_OPEN

    panel = make_panel()
    views = []
    for i in range(MAX_OPEN + 1):  # one at a time: each finish opens its player
        panel.form.prompt.value = f"clip number {i}"
        job = panel.submit()
        views.append(panel.view(job))
        clock.run_until(lambda job=job: job.state == "finished")
        # Each job opened its player as it finished, closing the one opened before.
        wait_for(lambda: playing_bytes(views[-1]) and
                 [v.opened for v in views].count(True) == 1, "only the newest clip open")
    for view in views:
        view.act("open")
    wait_for(lambda: sum(playing_bytes(v) for v in views) == MAX_OPEN, "the open players")
    assert [v.opened for v in views].count(True) == MAX_OPEN
    assert not views[0].opened and views[0].video == b""  # the first opened closed first
    assert all(v.video == b"" for v in views if not v.opened)


def test_gallery_lays_jobs_side_by_side(make_panel):
    panel = make_panel()
    box = panel.job_list.box
    assert "rw-gallery" not in box._dom_classes
    panel.job_list.mode.value = "gallery"
    assert "rw-gallery" in box._dom_classes
    panel.job_list.mode.value = "list"
    assert "rw-gallery" not in box._dom_classes


def test_failure_shows_the_message_and_try_again_resubmits(make_panel, demo_like, clock):
    panel = make_panel()
    panel.form.prompt.value = "a forbidden ritual"
    job = panel.submit()
    view = panel.view(job)
    clock.run_until(lambda: job.state == "failed")
    assert view.status == "failed"
    assert job.task.message and job.task.message[:20] in view.message
    assert "retry" in view.actions and "save" not in view.actions
    assert "1 failed" in panel.header.counts.value
    panel.form.prompt.value = "something else entirely"
    view.act("retry")
    assert imagine_count(demo_like) == 2
    again = panel.jobs[0]
    assert again is not job and again.prompt == "a forbidden ritual"
    clock.run_until(lambda: again.state == "failed")


def test_two_clicks_during_one_submit_send_one_job_and_say_so(make_panel, demo_like, clock):
    panel = make_panel()
    panel.form.prompt.value = "only once"
    gate = threading.Event()
    answer = {"task_id": "slow-1"}
    demo_like.add_job("slow-1", 20, end=demo_like.finished("slow-1", demo_like.video))
    demo_like.script("/runway-imagine", Reply(json=lambda seen: gate.wait(30) and answer))
    first = threading.Thread(target=panel.form.generate.click)
    first.start()
    wait_for(lambda: panel.form.generate.disabled, "Generate to be disabled while submitting")
    assert panel.form.generate.description == "Sending…"
    panel.form.generate.click()
    assert "Click ignored" in panel.form._status.value
    assert panel.submit() is None
    gate.set()
    first.join(30)
    assert not panel.form.generate.disabled
    assert panel.form.generate.description == "Generate"
    assert imagine_count(demo_like) == 1
    assert len(panel.jobs) == 1
    finish(panel, panel.jobs[0], clock)


def test_a_queued_repeat_click_is_ignored_but_a_changed_form_is_sent(make_panel, demo_like, clock):
    panel = make_panel()
    panel.form.prompt.value = "a quick double click"
    panel.form.generate.click()
    panel.form.generate.click()  # arrives right after the first submit returned
    assert imagine_count(demo_like) == 1
    assert "Click ignored" in panel.form._status.value
    panel.form.prompt.value = "a different job"
    panel.form.generate.click()
    assert imagine_count(demo_like) == 2
    assert "Click ignored" not in panel.form._status.value
    for job in panel.jobs:
        finish(panel, job, clock, plays=False)


def test_submit_on_an_invalid_form_raises_and_shows_the_problems(make_panel, demo_like):
    panel = make_panel()
    panel.form.generation_type.value = "image2video"
    with pytest.raises(ValidationError) as caught:
        panel.submit()
    assert set(caught.value.problems) == {"prompt is required",
                                          "image_url is required for image2video"}
    assert set(panel.form.problems) == set(caught.value.problems)
    assert "prompt is required" in panel.form._errors["prompt"].value
    assert imagine_count(demo_like) == 0 and panel.jobs == []


def test_use_as_input_fills_the_form_with_the_video(make_panel, clock):
    panel = make_panel()
    panel.form.prompt.value = "waves at dusk"
    job = panel.submit()
    finish(panel, job, clock)
    view = panel.view(job)
    assert "use" in view.actions
    view.act("use")
    form = panel.form
    assert form.generation_type.value == "video2video"
    assert form.video_url.value == job.task.video_url
    preview = form._video_preview
    wait_for(lambda: previewed(preview), "the video's preview")
    assert len(preview.children) == 1 and isinstance(preview.children[0], widgets.Video)
    assert is_mp4(preview.children[0].value)


def test_save_downloads_into_the_folder_and_journals_it(make_panel, panel_client, tmp_path, clock):
    panel = make_panel()
    panel.form.prompt.value = "a red kite over hills"
    job = panel.submit()
    finish(panel, job, clock)
    view = panel.view(job)
    view.act("save")
    target = tmp_path / "videos" / video_filename("a red kite over hills", job.task_id)
    # (A demo clip is kept in the history's folder first; Save copies it where asked.)
    wait_for(lambda: view.saved == f"saved to {target}", "the save to finish")
    assert target.is_file() and is_mp4(target.read_bytes())
    assert panel_client.store.get(job.task_id).local_path == str(target)


def test_a_failed_save_says_why(make_panel, tmp_path, clock):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    panel = make_panel(download_dir=blocker / "videos")
    panel.form.prompt.value = "nowhere to go"
    job = panel.submit()
    finish(panel, job, clock)
    view = panel.view(job)
    view.act("save")
    wait_for(lambda: view.save_error, "the save error")
    assert view.save_error.startswith("not saved: ") and "not-a-folder" not in view.saved


def test_auto_download_saves_every_finished_video(make_panel, panel_client, tmp_path, clock):
    panel = make_panel(auto_download=True, download_dir=tmp_path / "auto")
    panel.form.prompt.value = "snow falling on cedars"
    job = panel.submit()
    target = tmp_path / "auto" / video_filename("snow falling on cedars", job.task_id)
    finish(panel, job, clock)
    wait_for(lambda: target.is_file(), "the auto-download")
    wait_for(lambda: panel_client.store.get(job.task_id).local_path, "the journalled path")
    assert Path(panel_client.store.get(job.task_id).local_path) == target
    assert panel.view(job).video == target.read_bytes()


def test_show_code_is_a_requests_call_without_the_key(make_panel, panel_client, clock):
    panel = make_panel()
    panel.form.prompt.value = "a paper boat"
    job = panel.submit()
    view = panel.view(job)
    view.act("code")
    code = view.code
    assert 'os.environ["APIFRAME_API_KEY"]' in code
    assert "a paper boat" in code and "/runway-imagine" in code
    assert panel_client.api_key not in code
    compile(view.code_text(), "snippet", "exec")
    view.act("code")
    assert view.code == ""
    finish(panel, job, clock)


def test_hostile_prompt_and_server_message_stay_text(make_panel, clock):
    panel = make_panel()
    prompt = f'{HOSTILE} forbidden " onmouseover="alert(2)'
    panel.form.prompt.value = prompt
    job = panel.submit()
    view = panel.view(job)
    assert view.prompt == prompt  # shown with textContent by the view's script
    clock.run_until(lambda: job.state == "failed")
    assert not job.apply(Task(job.task_id, "failed", message=HOSTILE))  # terminal: ignored
    assert HOSTILE not in view.message
    assert_safe_markup(shown_html(panel))


def test_the_view_script_never_parses_markup():
    from runway_widget.widget.job_view import STATIC

    script = (STATIC / "job_view.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script


def test_hostile_task_from_the_server_is_never_a_src(make_panel):
    panel = make_panel()
    job = panel.attach("hostile-task")
    view = panel.view(job)
    job.apply(Task("hostile-task", "finished", 100, "javascript:alert(1)"))
    view.act("open")
    wait_for(lambda: "no playable video URL" in view.note, "the player note")
    assert view.note_is_error and view.video_src == "" and view.link == ""
    assert "save" not in view.actions and "use" not in view.actions
    other = panel.attach("hostile-message")
    panel.view(other)
    other.apply(Task("hostile-message", "failed", message=HOSTILE + "<script>x()</script>"))
    assert HOSTILE in panel.view(other).message
    assert_safe_markup(shown_html(panel))


def test_a_remote_video_plays_from_its_url_and_is_linked(make_panel):
    panel = make_panel()
    job = panel.attach("remote-task")
    view = panel.view(job)
    url = "https://cdn.example.com/clips/a.mp4?sig=1&x=<y>"
    job.apply(Task("remote-task", "finished", 100, url))
    view.act("open")
    wait_for(lambda: view.video_src == url, "the remote player")
    assert view.video == b"" and view.link == url


def test_submit_errors_are_a_banner(make_panel, demo_like, client_for, tmp_path):
    wrong = client_for(demo_like, api_key="not-the-demo-key",
                       store=JobStore(tmp_path / "other.jsonl"))
    panel = make_panel(wrong)
    panel.form.prompt.value = "anything"
    assert panel.submit() is None
    assert panel._banner.shown
    assert "API key" in panel.banner
    assert panel.jobs == []
    wait_for(lambda: "unavailable" in panel.header.credits.value, "the credits error")
    panel._banner.close_button.click()
    assert not panel._banner.shown and panel.banner == ""


def _submit_without_answer(panel, demo_like) -> None:
    panel.form.prompt.value = "lost in transit"
    demo_like.script("/runway-imagine", Reply(drop=True))
    assert panel.submit() is None


def test_an_unanswered_submit_warns_to_check_history(make_panel, demo_like):
    panel = make_panel()
    _submit_without_answer(panel, demo_like)
    assert "no answer came back" in panel.banner
    assert "history" in panel.banner and "rw-banner-warn" in panel.banner
    assert panel.jobs == []
    assert not panel.form.generate.disabled


def test_a_dashboard_banner_has_no_command_line_hint(make_panel, demo_like):
    panel = make_panel(dashboard=True)
    _submit_without_answer(panel, demo_like)
    assert "no answer came back" in panel.banner
    assert "runway-widget" not in panel.banner


def test_rate_limited_submit_is_a_banner_and_nothing_is_added(make_panel, demo_like, clock):
    panel = make_panel()
    panel.form.prompt.value = "too eager"
    wait_for(lambda: "…" not in panel.header.credits.value, "the first credits call")
    demo_like.script("/runway-imagine",
                     *[error(429, "Too many requests", **{"Retry-After": "0.05"})] * 5)
    assert panel.submit() is None
    assert "Too many requests" in panel.banner
    assert panel.jobs == []
    job = panel.submit()
    assert job is not None and not panel._banner.shown
    finish(panel, job, clock)


def test_header_shows_backend_credits_and_refreshes(make_panel, panel_client, clock):
    panel = make_panel()
    header = panel.header
    assert "DEMO" in header.title.value
    wait_for(lambda: "credits" in header.credits.value and "…" not in header.credits.value,
             "the credits")
    assert "unavailable" not in header.credits.value
    panel.form.prompt.value = "a refresh check"
    job = panel.submit()
    finish(panel, job, clock)
    header.refresh_button.click()
    assert job.state == "finished"
    text = repr(panel)
    assert "DEMO" in text and job.task_id in text and "finished" in text
    assert panel_client.api_key not in text
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == text


def test_attach_follows_a_task_submitted_elsewhere(make_panel, panel_client, clock):
    panel = make_panel()
    task_id = panel_client.imagine(prompt="from the command line", generation_type="text2video")
    job = panel.attach(task_id)
    assert job.prompt == "from the command line"
    assert panel.attach(task_id) is job
    finish(panel, job, clock)
    assert job.state == "finished"


def test_a_hand_built_client_on_the_demo_server_shows_the_demo_badge(
    make_panel, demo_like, client_for, tmp_path
):
    """The README's example: a client given the demo's key and URL, not ``demo=True``."""
    demo_like.account_info["plan"] = "demo"  # what a demo backend on this machine answers
    client = client_for(demo_like, store=JobStore(tmp_path / "hand.jsonl"))
    assert not client.is_demo  # nothing is known before the account answers
    panel = make_panel(client)
    wait_for(lambda: ">DEMO</span>" in panel.header.title.value, "the DEMO badge")
    assert client.is_demo and panel.header.backend_label == "DEMO"
    assert 'class="rw-badge rw-badge-live"' not in panel.header.title.value
    assert "DEMO" in repr(panel)


def test_default_panel_uses_the_demo_backend(monkeypatch):
    from runway_widget.widget import RunwayPanel

    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    panel = RunwayPanel()
    try:
        assert panel.client.is_demo
        assert "DEMO" in panel.header.title.value
    finally:
        panel.close()


@pytest.mark.parametrize("earlier", [0, 3])
def test_resume_after_restart_shows_history_and_finishes_unfinished(
    make_panel, panel_client, demo_like, earlier, monkeypatch, clock
):
    monkeypatch.setattr(history_module, "VISIBLE_HISTORY", 5)
    store = panel_client.store
    backend = panel_client.base_url
    first = make_panel()
    first.form.prompt.value = "finished before the restart"
    done = first.submit()
    finish(first, done, clock)
    for i in range(3 + earlier):  # older finished jobs, journalled as the tracker would
        store.record_submission(f"old-{i}", _request(f"old job {i}"), backend=backend)
        store.record_task(Task(f"old-{i}", "finished", 100, done.task.video_url), backend=backend)
    first.form.prompt.value = "still running at the restart"
    running = first.submit()
    first.close()  # the kernel restarts: nothing follows the job any more
    assert running.state == "running"

    second = make_panel()
    ids = [job.task_id for job in second.jobs]
    assert ids[0] == running.task_id  # running first
    button = second.history.earlier_button
    if earlier:
        assert len(second.jobs) == 5
        assert "rw-hidden" not in button._dom_classes
        assert f"Show {earlier} earlier" in button.description
        button.click()
        assert len(second.jobs) == 5 + earlier
        assert "rw-hidden" in button._dom_classes
        assert done.task_id in {job.task_id for job in second.jobs}
    else:
        assert len(second.jobs) == 5
        assert "rw-hidden" in button._dom_classes
    resumed = {job.task_id: job for job in second.jobs}[running.task_id]
    finish(second, resumed, clock)
    assert resumed.state == "finished"
    again = {job.task_id: job for job in second.jobs}[done.task_id]
    view = second.view(again)
    assert not view.opened  # jobs from the history come collapsed
    view.act("open")
    wait_for(lambda: playing_bytes(view), "the restored job's player")
    assert imagine_count(demo_like) == 2


def _request(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, generation_type="text2video")


def test_every_error_of_the_package_has_its_own_banner():
    from runway_widget import errors
    from runway_widget.widget.banner import MESSAGES, message_for

    for name in errors.__all__:
        cls = getattr(errors, name)
        message = message_for(cls.__new__(cls))
        assert message is not MESSAGES["Exception"], name
    assert message_for(errors.QuotaExceededError.__new__(errors.QuotaExceededError)).warn
    assert message_for(KeyError("x")) is MESSAGES["Exception"]
