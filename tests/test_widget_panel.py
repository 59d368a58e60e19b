"""The panel against the demo backend over HTTP, driven the way a user drives it."""

from __future__ import annotations

import threading
from pathlib import Path

import ipywidgets as widgets
import pytest
from widget_helpers import (
    assert_safe_markup,
    imagine_count,
    is_mp4,
    panel_factory,
    shown_html,
    tags,
    wait_for,
)

from runway_widget.client import ApiframeClient
from runway_widget.models import Task, video_filename
from runway_widget.store import JobStore

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def make_panel(demo_client, tmp_path):
    yield from panel_factory(demo_client, tmp_path)


def playing_bytes(card) -> bool:
    return card.player.children == (card.video,) and is_mp4(card.video.value)


def finish(card) -> None:
    wait_for(lambda: card.state != "running", f"task {card.task_id} to end")
    if card.state == "finished":
        wait_for(lambda: playing_bytes(card), "the player to get the video bytes")


def test_generate_shows_progress_then_the_video(make_panel, demo_server):
    panel = make_panel()
    panel.form.prompt.value = "a lighthouse in a storm"
    panel.form.generate.click()
    assert len(panel.jobs) == 1
    card = panel.jobs[0]
    assert panel._job_list.children[0] is card
    assert card.player.children == ()  # no empty player on the page
    seen: list[float] = []
    card.bar.observe(lambda change: seen.append(change["new"]), names="value")
    finish(card)
    assert card.state == "finished"
    assert seen == sorted(seen), "the bar went backwards"
    assert any(0 < value < 100 for value in seen), f"no progress between 0 and 100: {seen}"
    assert card.bar.value == 100 and card.bar.bar_style == "success"
    assert "finished" in card.status.value
    # The demo's URL is the kernel's loopback: a browser elsewhere could not open it, so the
    # card plays the bytes and offers no link to it.
    assert "127.0.0.1" not in card.link.value and "href" not in card.link.value
    assert "1 finished" in panel._counts.value
    assert "0 running" in panel._counts.value
    assert imagine_count(demo_server) == 1


def test_newest_card_is_on_top(make_panel):
    panel = make_panel()
    first = panel.form
    first.prompt.value = "first"
    one = panel.submit()
    first.prompt.value = "second"
    two = panel.submit()
    assert panel.jobs == [two, one]
    assert panel._job_list.children[:2] == (two, one)
    for card in (one, two):
        finish(card)


def test_failure_shows_the_message_and_try_again_resubmits(make_panel, demo_server):
    panel = make_panel()
    panel.form.prompt.value = "a forbidden ritual"
    card = panel.submit()
    wait_for(lambda: card.state == "failed", "the forbidden prompt to fail")
    assert card.bar.bar_style == "danger"
    assert card.message.layout.display == "block"
    assert card.task.message and card.task.message[:20] in card.message.value.replace(
        "&#x27;", "'"
    )
    assert card.retry_button.layout.display != "none"
    assert card.save_button.layout.display == "none"
    assert "1 failed" in panel._counts.value
    panel.form.prompt.value = "something else entirely"
    card.retry_button.click()
    assert imagine_count(demo_server) == 2
    again = panel.jobs[0]
    assert again is not card and again.prompt == "a forbidden ritual"
    wait_for(lambda: again.state == "failed", "the retried job to fail again")


def test_two_clicks_during_one_submit_send_one_job(make_panel, demo_server):
    panel = make_panel()
    panel.form.prompt.value = "only once"
    demo_server.faults.slow_seconds = 1.0
    first = threading.Thread(target=panel.form.generate.click)
    first.start()
    wait_for(lambda: panel.form.generate.disabled, "Generate to be disabled while submitting")
    panel.form.generate.click()
    assert panel.submit() is None
    first.join(30)
    demo_server.faults.slow_seconds = 0
    assert not panel.form.generate.disabled
    assert imagine_count(demo_server) == 1
    assert len(panel.jobs) == 1
    finish(panel.jobs[0])


def test_a_queued_repeat_click_is_ignored_but_a_changed_form_is_sent(make_panel, demo_server):
    panel = make_panel()
    panel.form.prompt.value = "a quick double click"
    panel.form.generate.click()
    panel.form.generate.click()  # arrives right after the first submit returned
    assert imagine_count(demo_server) == 1
    panel.form.prompt.value = "a different job"
    panel.form.generate.click()
    assert imagine_count(demo_server) == 2
    for card in panel.jobs:
        finish(card)


def test_use_as_input_fills_the_form_with_the_video(make_panel):
    panel = make_panel()
    panel.form.prompt.value = "waves at dusk"
    card = panel.submit()
    finish(card)
    assert card.use_button.layout.display != "none"
    card.use_button.click()
    form = panel.form
    assert form.generation_type.value == "video2video"
    assert form.video_url.value == card.task.video_url
    preview = form._video_preview
    assert len(preview.children) == 1 and isinstance(preview.children[0], widgets.Video)
    assert is_mp4(preview.children[0].value)


def test_save_downloads_into_the_folder_and_journals_it(make_panel, demo_client, tmp_path):
    panel = make_panel()
    panel.form.prompt.value = "a red kite over hills"
    card = panel.submit()
    finish(card)
    card.save_button.click()
    target = tmp_path / "videos" / video_filename("a red kite over hills", card.task_id)
    wait_for(lambda: "saved to" in card.link.value, "the save to finish")
    assert target.is_file() and is_mp4(target.read_bytes())
    assert "saved to" in card.link.value
    assert demo_client.store.get(card.task_id).local_path == str(target)


def test_auto_download_saves_every_finished_video(make_panel, demo_client, tmp_path):
    panel = make_panel(auto_download=True, download_dir=tmp_path / "auto")
    panel.form.prompt.value = "snow falling on cedars"
    card = panel.submit()
    target = tmp_path / "auto" / video_filename("snow falling on cedars", card.task_id)
    wait_for(lambda: target.is_file(), "the auto-download")
    finish(card)
    wait_for(lambda: demo_client.store.get(card.task_id).local_path, "the journalled path")
    assert Path(demo_client.store.get(card.task_id).local_path) == target
    assert card.video.value == target.read_bytes()


def test_show_code_is_a_requests_call_without_the_key(make_panel, demo_client):
    panel = make_panel()
    panel.form.prompt.value = "a paper boat"
    card = panel.submit()
    card.code_button.value = True
    code = card.code.value
    assert card.code.layout.display == "block"
    assert "os.environ[&quot;APIFRAME_API_KEY&quot;]" in code
    assert "a paper boat" in code and "/runway-imagine" in code
    assert demo_client.api_key not in code
    source = card.code_text()
    compile(source, "snippet", "exec")
    card.code_button.value = False
    assert card.code.layout.display == "none"
    finish(card)


def test_hostile_prompt_and_server_message_are_escaped(make_panel):
    panel = make_panel()
    prompt = f'{HOSTILE} forbidden " onmouseover="alert(2)'
    panel.form.prompt.value = prompt
    card = panel.submit()
    header = card._header.value
    assert "&lt;img src=x onerror=alert(1)&gt;" in header
    (div,) = [a for tag, a in tags(header) if tag == "div" and ("class", "rw-prompt") in a]
    assert dict(div)["title"] == prompt
    wait_for(lambda: card.state == "failed", "the job to fail")
    card.update(Task(card.task_id, "failed", message=HOSTILE))  # terminal: ignored
    assert_safe_markup(shown_html(panel))
    assert "<img" not in card.message.value


def test_hostile_task_from_the_server_is_escaped(make_panel):
    panel = make_panel()
    card = panel.attach("hostile-task")
    card.update(Task("hostile-task", "finished", 100, "javascript:alert(1)"))
    wait_for(lambda: "no playable video URL" in card._player_html.value, "the player note")
    assert card.player.children == (card._player_html,)
    other = panel.attach("hostile-message")
    other.update(Task("hostile-message", "failed", message=HOSTILE + "<script>x()</script>"))
    assert "&lt;img src=x" in other.message.value
    markup = shown_html(panel)
    assert_safe_markup(markup)
    assert "javascript:" not in "".join(
        value or "" for _, attrs in tags(markup) for _, value in attrs
    )


def test_a_remote_video_plays_from_its_url_and_is_linked(make_panel):
    panel = make_panel()
    card = panel.attach("remote-task")
    url = "https://cdn.example.com/clips/a.mp4?sig=1&x=<y>"
    card.update(Task("remote-task", "finished", 100, url))
    wait_for(lambda: "<video" in card._player_html.value, "the remote player")
    assert card.player.children == (card._player_html,)
    escaped = '"https://cdn.example.com/clips/a.mp4?sig=1&amp;x=&lt;y&gt;"'
    assert f"src={escaped}" in card._player_html.value
    assert f"href={escaped}" in card.link.value
    assert_safe_markup(shown_html(panel))


def test_submit_errors_are_a_banner(make_panel, demo_server, tmp_path):
    wrong = ApiframeClient(api_key="not-the-demo-key", base_url=demo_server.base_url,
                           store=JobStore(tmp_path / "other.jsonl"))
    panel = make_panel(client=wrong)
    panel.form.prompt.value = "anything"
    assert panel.submit() is None
    assert panel._banner_row.layout.display == "flex"
    assert "API key" in panel.banner
    assert panel.jobs == []
    wait_for(lambda: "unavailable" in panel._credits.value, "the credits error")
    panel._banner_close.click()
    assert panel._banner_row.layout.display == "none"
    wrong.close()


def test_an_unanswered_submit_warns_to_check_history(make_panel, demo_server):
    panel = make_panel()
    panel.form.prompt.value = "lost in transit"
    demo_server.faults.drop_rate = 1.0
    try:
        assert panel.submit() is None
    finally:
        demo_server.faults.drop_rate = 0.0
    assert "no answer came back" in panel.banner
    assert "history" in panel.banner
    assert panel.jobs == []
    assert not panel.form.generate.disabled


def test_rate_limited_submit_is_a_banner_and_nothing_is_added(make_panel, demo_server):
    panel = make_panel()
    panel.form.prompt.value = "too eager"
    wait_for(lambda: "…" not in panel._credits.value, "the first credits call")
    demo_server.faults.retry_after = 0.05
    demo_server.faults.rate_limit_burst = 50
    try:
        assert panel.submit() is None
    finally:
        demo_server.faults.reset()
    assert "Too many requests" in panel.banner
    assert panel.jobs == []
    card = panel.submit()
    assert card is not None and panel._banner_row.layout.display == "none"
    finish(card)


def test_header_shows_backend_credits_and_refreshes(make_panel, demo_client):
    panel = make_panel()
    assert "DEMO" in panel._title.value
    wait_for(lambda: "credits" in panel._credits.value and "…" not in panel._credits.value,
             "the credits")
    assert "unavailable" not in panel._credits.value
    panel.form.prompt.value = "a refresh check"
    card = panel.submit()
    finish(card)
    panel._refresh_button.click()
    assert card.state == "finished"
    text = repr(panel)
    assert "DEMO" in text and card.task_id in text and "finished" in text
    assert demo_client.api_key not in text
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == text


def test_attach_follows_a_task_submitted_elsewhere(make_panel, demo_client):
    panel = make_panel()
    task_id = demo_client.imagine(prompt="from the command line", generation_type="text2video")
    card = panel.attach(task_id)
    assert card.prompt == "from the command line"
    assert panel.attach(task_id) is card
    finish(card)
    assert card.state == "finished"


def test_default_panel_uses_the_demo_backend(monkeypatch):
    from runway_widget.widget import RunwayPanel

    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    panel = RunwayPanel()
    try:
        assert panel.client.is_demo
        assert "DEMO" in panel._title.value
    finally:
        panel.close()


@pytest.mark.parametrize("earlier", [0, 3])
def test_resume_after_restart_shows_history_and_finishes_unfinished(
    make_panel, demo_client, demo_server, earlier
):
    store = demo_client.store
    backend = demo_client.base_url
    first = make_panel()
    first.form.prompt.value = "finished before the restart"
    done = first.submit()
    finish(done)
    for i in range(3 + earlier):  # older finished jobs, journalled as the tracker would
        store.record_submission(f"old-{i}", _request(f"old job {i}"), backend=backend)
        store.record_task(Task(f"old-{i}", "finished", 100, done.task.video_url), backend=backend)
    first.form.prompt.value = "still running at the restart"
    running = first.submit()
    first.close()  # the kernel restarts: nothing follows the job any more
    assert running.state == "running"

    second = make_panel()
    cards = {card.task_id: card for card in second.jobs}
    assert second.jobs[0].task_id == running.task_id  # newest first
    assert running.task_id in cards
    if earlier:
        assert len(second.jobs) == 5
        assert second._earlier_toggle.layout.display != "none"
        assert f"Show {earlier} earlier" in second._earlier_toggle.description
        second._earlier_toggle.value = True
        assert len(second.jobs) == 5 + earlier
        assert done.task_id in {card.task_id for card in second.jobs}
    else:
        assert len(second.jobs) == 5
        assert second._earlier_toggle.layout.display == "none"
    resumed = {card.task_id: card for card in second.jobs}[running.task_id]
    finish(resumed)
    assert resumed.state == "finished"
    again = {card.task_id: card for card in second.jobs}[done.task_id]
    finish(again)
    assert is_mp4(again.video.value)
    assert imagine_count(demo_server) == 2


def _request(prompt: str):
    from runway_widget.models import GenerationRequest

    return GenerationRequest(prompt=prompt, generation_type="text2video")
