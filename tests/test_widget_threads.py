"""The thread contract of the views: built on the kernel thread, changed only through one path.

With the checks on (what ``RUNWAY_WIDGET_LOG=debug`` does), jobs run through the poller, a
webhook connection and the media lane; every change they make must go through
`ui_updates.apply`, and nothing of the panel may be built off the main thread.
"""

from __future__ import annotations

import threading

import pytest
from waiting import wait_for
from widget_helpers import chosen_file, finish, panel_factory, playing_bytes, png_bytes, previewed

from runway_widget.tracking.tracker import THREAD_NAME, TaskTracker
from runway_widget.tracking.webhooks import WebhookReceiver
from runway_widget.widget import ui_updates
from runway_widget.widget.job import Job
from runway_widget.widget.job_view import JobView


@pytest.fixture
def make_panel(panel_client, tmp_path, clock):
    yield from panel_factory(panel_client, tmp_path, clock)


def _in_thread(fn):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="some-other-thread")
    thread.start()
    thread.join(10)
    return errors


def test_poller_and_media_lane_update_only_through_the_one_path(make_panel, clock):
    with ui_updates.checked() as violations:
        panel = make_panel()
        panel.form.prompt.value = "a checked lighthouse"
        job = panel.submit()
        finish(panel, job, clock)
        panel.view(job).act("close")
        panel.view(job).act("open")
        wait_for(lambda: playing_bytes(panel.view(job)), "the player to open again")
        threads = ui_updates.updating_threads()
    assert violations == []
    assert THREAD_NAME in threads
    assert any(name.startswith("runway-widget-media") for name in threads), threads
    assert any(name.startswith("runway-widget-account") for name in threads), threads


def test_previews_and_uploads_update_only_through_the_one_path(make_panel, demo_like):
    image = png_bytes()
    demo_like.files["/samples/frame.png"] = image
    with ui_updates.checked() as violations:
        panel = make_panel()
        form = panel.form
        form.generation_type.value = "image2video"
        form.end_image_url.value = demo_like.base_url + "/samples/frame.png"  # a local read
        form.image_upload.value = chosen_file(image)  # a call to the service
        wait_for(lambda: previewed(form._end_image_preview), "the typed URL's preview")
        url = wait_for(lambda: form.image_url.value, "the uploaded image's URL")
        wait_for(lambda: previewed(form._image_preview), "the uploaded image's preview")
        threads = ui_updates.updating_threads()
    assert violations == []
    assert url.startswith(demo_like.base_url)
    assert any(name.startswith("runway-widget-media") for name in threads), threads
    assert any(name.startswith("runway-widget-account") for name in threads), threads


def test_webhook_pushes_update_only_through_the_one_path(make_panel, panel_client, demo_like,
                                                        clock):
    with WebhookReceiver() as receiver, ui_updates.checked() as violations:
        # A poller on a clock that stands still never polls: every update is pushed.
        tracker = TaskTracker(panel_client, webhooks=receiver, clock=clock, wait=clock.wait)
        try:
            panel = make_panel(tracker=tracker, webhooks=receiver)
            panel.form._receive_here.click()
            panel.form.prompt.value = "updates pushed to this kernel"
            job = panel.submit()
            assert demo_like.push(job.task_id) == 200  # running
            demo_like.add_task(job.task_id, demo_like.finished(job.task_id, demo_like.video))
            assert demo_like.push(job.task_id) == 200  # finished
            finish(panel, job)
            threads = ui_updates.updating_threads()
        finally:
            tracker.stop()
    assert violations == []
    assert receiver.stats["accepted"] > 0
    assert any(name.startswith("runway-widget-webhooks") for name in threads), threads


def test_a_change_off_the_path_from_another_thread_is_caught():
    with ui_updates.checked() as violations:
        view = JobView(Job("task-1", {"prompt": "p", "generation_type": "text2video"}))
        try:
            errors = _in_thread(lambda: setattr(view, "label", "set from a thread"))
            assert [type(e) for e in errors] == [ui_updates.ThreadContractError]
            assert _in_thread(lambda: ui_updates.set_values(view, label="through the path")) == []
            assert view.label == "through the path"
        finally:
            view.close()
    assert len(violations) == 1 and "JobView.label" in violations[0]


def test_building_a_view_off_the_kernel_thread_is_caught():
    with ui_updates.checked() as violations:
        errors = _in_thread(lambda: JobView(Job("task-2")))
    assert [type(e) for e in errors] == [ui_updates.ThreadContractError]
    assert violations and "built on thread some-other-thread" in violations[0]


def test_job_state_never_moves_back_from_any_thread():
    from runway_widget.models import Task

    job = Job("task-3")
    seen: list[float] = []
    job.subscribe(lambda j: seen.append(j.progress))
    threads = [threading.Thread(target=job.advance, args=(float(p),)) for p in range(0, 100, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert job.progress == 99.0
    assert job.apply(Task("task-3", "finished", 100, "https://example.com/a.mp4"))
    assert not job.apply(Task("task-3", "processing", 10))
    job.advance(5)
    assert job.state == "finished" and job.progress == 100.0
