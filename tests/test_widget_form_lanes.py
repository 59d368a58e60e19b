"""The form's slow work runs off the kernel thread: a local URL's preview is read in the media
lane, an upload goes to the service in the backend's account lane.

The observers return at once ("loading the preview…", "uploading …") while the fake service
holds its reply on an event; what comes back arrives through `ui_updates`, and a result that
went stale meanwhile (a newer URL typed, a newer upload chosen) never overwrites the newer one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fake_api import Reply, Seen
from waiting import wait_for
from widget_helpers import chosen_file, panel_factory, png_bytes, previewed

from runway_widget.widget.background import Lane
from runway_widget.widget.media.preview import LOADING, MediaPreview
from runway_widget.widget.media.source import MediaSource
from runway_widget.widget.shared_models import SharedModels

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_panel(panel_client, tmp_path, clock):
    yield from panel_factory(panel_client, tmp_path, clock)


class Held:
    """A reply the fake service holds until `release`; `arrived` is set once asked for."""

    def __init__(self, answer: Any) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._answer = answer

    def __call__(self, seen: Seen) -> Any:
        self.arrived.set()
        assert self.released.wait(30), "the test never released the reply"
        return self._answer

    def release(self) -> None:
        self.released.set()


def _values(widget: Any, name: str = "value") -> list[Any]:
    """Every value ``widget.name`` takes from now on."""
    seen: list[Any] = []
    widget.observe(lambda change: seen.append(change["new"]), names=name)
    return seen


def _line(form: Any, name: str = "image_url") -> str:
    return str(form._errors[name].value)


# ----- the preview of a local URL ---------------------------------------------------------------


@pytest.fixture
def preview(demo_like):
    """An image preview reading the fake service's files, in a one-worker lane of its own."""
    lane = Lane("test-preview", workers=1)
    media = MediaSource(lambda url: url.startswith(demo_like.base_url),
                        transport=demo_like.transport())
    box = MediaPreview(media, "image", SharedModels(), lane=lane)
    yield box
    box.close()
    lane.shutdown()
    media.close()


def test_a_preview_read_runs_in_its_lane_and_a_newer_url_wins(preview, demo_like):
    old, new = png_bytes((64, 36)), png_bytes((32, 18))
    held = Held(old)
    demo_like.script("/old.png", Reply(200, body=held))
    demo_like.files["/new.png"] = new
    player = _values(preview._player)

    preview.show(demo_like.base_url + "/old.png")  # returns while the read is held
    assert held.arrived.wait(10)
    assert LOADING in preview._note.value and not previewed(preview)
    preview.show(demo_like.base_url + "/new.png")  # typed while the old read runs
    assert LOADING in preview._note.value
    held.release()  # the old read ends first (one worker): its bytes are stale
    assert wait_for(lambda: previewed(preview), "the new URL's preview") == new
    assert old not in player


def test_a_preview_that_cannot_be_read_says_why(preview, demo_like):
    preview.show(demo_like.base_url + "/missing.png")
    wait_for(lambda: "could not read it" in preview._note.value, "the failure's note")
    assert "HTTP 404" in preview._note.value and not previewed(preview)


def test_a_preview_the_lane_cannot_take_says_so(demo_like):
    full = Lane("test-full", workers=1, queue_limit=0)
    media = MediaSource(lambda url: True, transport=demo_like.transport())
    box = MediaPreview(media, "image", SharedModels(), lane=full)
    try:
        box.show(demo_like.base_url + "/a.png")
        assert "the panel is busy" in box._note.value
    finally:
        box.close()
        media.close()


def test_the_form_previews_a_local_url_in_the_media_lane(make_panel, demo_like):
    image = png_bytes()
    held = Held(image)
    demo_like.script("/samples/frame.png", Reply(200, body=held))
    form = make_panel().form
    form.generation_type.value = "image2video"
    form.image_url.value = demo_like.base_url + "/samples/frame.png"
    assert held.arrived.wait(10)  # the observer returned; the read is still held
    assert LOADING in form._image_preview._note.value
    held.release()
    assert wait_for(lambda: previewed(form._image_preview), "the preview") == image


# ----- uploads ----------------------------------------------------------------------------------


def _held_upload(demo_like: Any, data: bytes, path: str) -> Held:
    """The next upload is held; once released it answers with ``path`` (which serves ``data``)."""
    demo_like.files[path] = data
    held = Held({"imageURL": demo_like.base_url + path})
    demo_like.script("/upload", Reply(200, json=held))
    return held


def _upload_form(make_panel: Callable[..., Any]) -> Any:
    form = make_panel().form
    form.generation_type.value = "image2video"
    return form


def test_an_upload_runs_off_the_kernel_thread_and_fills_the_field(make_panel, demo_like):
    data = png_bytes()
    held = _held_upload(demo_like, data, "/uploads/held.png")
    form = _upload_form(make_panel)
    form.image_upload.value = chosen_file(data, "kite.png")  # returns while the upload is held
    assert form.image_upload.value == ()
    assert held.arrived.wait(10)
    assert "uploading kite.png…" in _line(form) and form.image_url.value == ""
    held.release()
    url = wait_for(lambda: form.image_url.value, "the uploaded image's URL")
    assert url == demo_like.base_url + "/uploads/held.png" and _line(form) == ""
    assert wait_for(lambda: previewed(form._image_preview), "the preview") == data


def test_a_url_typed_during_an_upload_wins(make_panel, demo_like):
    held = _held_upload(demo_like, png_bytes(), "/uploads/late.png")
    form = _upload_form(make_panel)
    form.image_upload.value = chosen_file(png_bytes())
    assert held.arrived.wait(10)
    form.image_url.value = "https://example.com/typed.png"
    held.release()
    wait_for(lambda: _line(form) == "", "the upload to end")  # the same update fills, or not
    assert form.image_url.value == "https://example.com/typed.png"


def test_a_newer_upload_wins_over_an_older_one_and_one_file_is_queued_once(make_panel,
                                                                          demo_like):
    older, newer = png_bytes((64, 36)), png_bytes((32, 18))
    held = _held_upload(demo_like, older, "/uploads/older.png")
    form = _upload_form(make_panel)
    filled = _values(form.image_url)
    form.image_upload.value = chosen_file(older, "older.png")
    assert held.arrived.wait(10)
    form.image_upload.value = chosen_file(newer, "newer.png")  # queued behind the held one
    form.image_upload.value = chosen_file(newer, "newer.png")  # the same file: not twice
    assert "uploading newer.png…" in _line(form)
    held.release()
    url = wait_for(lambda: form.image_url.value, "the newer upload's URL")
    assert demo_like.files[url.removeprefix(demo_like.base_url)] == newer
    assert filled == [url]  # the older upload's URL never filled the field
    assert demo_like.count("/upload") == 2


def test_a_failed_upload_says_so_on_its_line(make_panel, demo_like):
    demo_like.script("/upload", Reply(400, json={"errors": [{"msg": "not an image"}]}))
    form = _upload_form(make_panel)
    form.image_upload.value = chosen_file(png_bytes())
    wait_for(lambda: "upload failed" in _line(form), "the failure's line")
    assert "not an image" in _line(form) and form.image_url.value == ""
