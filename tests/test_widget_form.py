"""The generation form, driven as a user would: set values, click, read what is shown."""

from __future__ import annotations

import ipywidgets as widgets
import pytest
from waiting import wait_for
from widget_helpers import (
    assert_safe_markup,
    chosen_file,
    panel_factory,
    png_bytes,
    previewed,
    shown_html,
    tags,
)

from runway_widget.errors import ValidationError
from runway_widget.models import Problem
from runway_widget.widget.form import GenerationForm
from runway_widget.widget.shared_models import is_shown

ROWS_BY_TYPE = {
    "text2video": {"aspect_ratio"},
    "image2video": {"image_url", "end_image_url"},
    "video2video": {"video_url"},
}
TYPE_ROWS = {"aspect_ratio", "image_url", "end_image_url", "video_url"}


@pytest.fixture
def make_panel(panel_client, tmp_path, clock):
    yield from panel_factory(panel_client, tmp_path, clock)


@pytest.fixture
def form():
    form = GenerationForm()
    yield form
    form.close()


@pytest.mark.parametrize("kind", list(ROWS_BY_TYPE))
def test_each_type_shows_only_its_fields(form, kind):
    form.generation_type.value = kind
    shown = {name for name in TYPE_ROWS if is_shown(form._rows[name])}
    assert shown == ROWS_BY_TYPE[kind]
    for always in (form.prompt, form.generation_type, form.model):
        assert is_shown(always)


def test_request_carries_only_the_fields_of_the_type(form):
    form.prompt.value = "  a lighthouse in a storm  "
    form.image_url.value = "https://example.com/a.png"
    form.video_url.value = "https://example.com/b.mp4"
    assert form.request().to_payload() == {
        "prompt": "a lighthouse in a storm",
        "generation_type": "text2video",
        "aspect_ratio": "16:9",
        "model": "gen3a_turbo",
        "duration": 5,
    }
    form.generation_type.value = "image2video"
    form.duration.value = 10
    form.flip.value = True
    payload = form.request().to_payload()
    assert payload["image_url"] == "https://example.com/a.png"
    assert "aspect_ratio" not in payload and "video_url" not in payload
    assert payload["duration"] == 10 and payload["flip"] is True
    form.generation_type.value = "video2video"
    payload = form.request().to_payload()
    assert payload["video_url"] == "https://example.com/b.mp4"
    assert "image_url" not in payload


def test_character_count_follows_the_prompt(form):
    form.prompt.value = "abc"
    assert "3 characters" in form._count.value
    form.prompt.value = "x"
    assert "1 character<" in form._count.value


def test_webhook_secret_leaves_the_synced_field_at_once(form):
    form.webhook_url.value = "https://example.com/hook"
    form.webhook_secret.value = "whsec-typed-ABCD1234"
    assert form.webhook_secret.value == ""
    assert "secret is set" in form._secret_note.value
    for part in ("whsec", "1234", "D1234", "ABCD"):  # not even its last characters
        assert part not in form._secret_note.value
    assert form.request().webhook_secret == "whsec-typed-ABCD1234"
    assert "webhook_secret" not in form.request().public_payload()
    form.forget_secret()
    assert form.request().webhook_secret is None


def test_problems_are_shown_next_to_their_fields_and_listed(form):
    form.generation_type.value = "image2video"
    form.show_problems(form.request().problems())
    assert is_shown(form._errors["prompt"])
    assert "prompt is required" in form._errors["prompt"].value
    assert "image_url is required" in form._errors["image_url"].value
    assert is_shown(form._summary)
    assert "2 problems" in form._summary.value
    form.prompt.value = "now there is a prompt"
    assert not is_shown(form._errors["prompt"])
    assert "prompt is required" not in form._summary.value
    assert "image_url is required" in form._summary.value


def test_problem_messages_are_escaped(form):
    form.show_problems([Problem(None, "<img src=x onerror=alert(1)>")])
    assert "&lt;img src=x" in form._summary.value
    assert not [t for t, _ in tags(form._summary.value) if t == "img"]


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<script>alert(1)</script>", "//evil.example/x"]
)
def test_hostile_preview_urls_never_become_a_src(form, url):
    form.generation_type.value = "image2video"
    form.image_url.value = url
    form.generation_type.value = "video2video"
    form.video_url.value = url
    markup = shown_html(form)
    assert "not an http(s) URL" in markup
    assert_safe_markup(markup)


def test_remote_preview_url_is_an_escaped_src(form):
    url = 'https://example.com/a.png?q="><script>alert(1)</script>'
    form.generation_type.value = "image2video"
    form.image_url.value = url
    imgs = [attrs for tag, attrs in tags(shown_html(form)) if tag == "img"]
    assert imgs and dict(imgs[0])["src"] == url
    assert_safe_markup(shown_html(form))


def test_use_video_switches_to_video2video(form):
    form.use_video("https://example.com/clip.mp4")
    assert form.generation_type.value == "video2video"
    assert form.video_url.value == "https://example.com/clip.mp4"
    assert is_shown(form._rows["video_url"])


# ----- with the demo-like fake service ---------------------------------------------------------


def test_invalid_input_is_shown_in_place_and_nothing_is_sent(make_panel, demo_like):
    panel = make_panel()
    panel.form.generation_type.value = "image2video"
    panel.form.generate.click()
    assert set(panel.form.problems) == {
        "prompt is required",
        "image_url is required for image2video",
    }
    panel.form.prompt.value = "a castle"
    panel.form.generation_type.value = "video2video"
    panel.form.video_url.value = "javascript:alert(1)"
    with pytest.raises(ValidationError):
        panel.submit()
    assert panel.form.problems == ["video_url must be an http(s) URL"]
    assert "must be an http(s) URL" in panel.form._errors["video_url"].value
    assert panel.jobs == []
    assert demo_like.count("/runway-imagine") == 0
    assert_safe_markup(shown_html(panel))


def test_local_image_url_preview_comes_through_the_widget(make_panel, demo_like):
    from runway_widget.demo.samples import sample_path

    demo_like.files["/samples/lighthouse.png"] = sample_path("lighthouse.png").read_bytes()
    panel = make_panel()
    form = panel.form
    form.generation_type.value = "image2video"
    form.image_url.value = demo_like.base_url + "/samples/lighthouse.png"
    preview = form._image_preview
    wait_for(lambda: previewed(preview), "the preview's bytes")
    assert len(preview.children) == 1 and isinstance(preview.children[0], widgets.Image)
    assert bytes(preview.children[0].value).startswith(b"\x89PNG")


def test_upload_fills_the_image_url_and_clears_the_upload_widget(make_panel, demo_like, clock):
    panel = make_panel()
    form = panel.form
    form.generation_type.value = "image2video"
    data = png_bytes()
    form.image_upload.value = chosen_file(data)
    assert form.image_upload.value == ()
    url = wait_for(lambda: form.image_url.value, "the uploaded image's URL")
    assert url.startswith(demo_like.base_url), form._errors["image_url"].value
    assert wait_for(lambda: previewed(form._image_preview), "the preview") == data
    form.prompt.value = "the uploaded frame comes alive"
    job = panel.submit()
    assert job is not None
    assert job.payload["image_url"] == url
    clock.run_until(lambda: job.state == "finished")
