"""Helpers for the panel tests: walking the widget tree, and test fixtures."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import ipywidgets as widgets
from waiting import wait_for


def walk(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    """The widget and every widget shown inside it (children, accordion pages)."""
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from walk(child)


def shown_html(widget: widgets.Widget) -> str:
    """All HTML markup currently in the widget tree."""
    return "\n".join(w.value for w in walk(widget) if isinstance(w, widgets.HTML))


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def tags(markup: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The real tags of the markup (escaped text is not a tag), with their attributes."""
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser.tags


def assert_safe_markup(markup: str) -> None:
    """Only http(s) src/href, no event-handler attributes, no script tags."""
    for tag, attrs in tags(markup):
        assert tag != "script", markup
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler {name} in <{tag}>"
            if name in ("src", "href"):
                assert (value or "").startswith(("http://", "https://")), (
                    f"<{tag} {name}={value!r}>"
                )


def imagine_count(server: Any) -> int:
    """Submissions a demo backend received."""
    return int(server.stats.get("/runway-imagine", 0))


def png_bytes(size: tuple[int, int] = (64, 36)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (30, 90, 160)).save(out, format="PNG")
    return out.getvalue()


def chosen_file(data: bytes, name: str = "frame.png") -> tuple[dict[str, Any], ...]:
    """A ``FileUpload`` value: one file chosen in the browser."""
    import datetime

    return ({"name": name, "type": "image/png", "size": len(data), "content": memoryview(data),
             "last_modified": datetime.datetime.now(tz=datetime.timezone.utc)},)


def previewed(preview: widgets.Box) -> bytes:
    """The bytes a form's preview shows in its player (b"" while it shows a note)."""
    shown = list(preview.children)
    if len(shown) == 1 and isinstance(shown[0], (widgets.Image, widgets.Video)):
        return bytes(shown[0].value)
    return b""


def is_mp4(data: bytes) -> bool:
    return len(data) > 8 and data[4:8] == b"ftyp"


def panel_factory(
    default_client: Any, tmp_path: Any, clock: Any = None
) -> Iterator[Callable[..., Any]]:
    """For a ``make_panel`` fixture: builds panels on ``client`` (downloads into tmp_path),
    following jobs on ``clock`` when given (a `FakeClock`), and closes them all afterwards."""
    from runway_widget.tracking.tracker import TaskTracker
    from runway_widget.widget import RunwayPanel

    panels = []
    trackers = []

    def make(client: Any = None, **kwargs: Any) -> RunwayPanel:
        client = client or default_client
        kwargs.setdefault("download_dir", tmp_path / "videos")
        if clock is not None and "tracker" not in kwargs:
            tracker = TaskTracker(client, clock=clock, wait=clock.wait)
            trackers.append(tracker)
            kwargs["tracker"] = tracker
        panel = RunwayPanel(client=client, **kwargs)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.close()
    for tracker in trackers:
        tracker.stop()


def playing_bytes(view: Any) -> bool:
    """The view's player is open and holds an MP4."""
    return bool(view.opened) and is_mp4(view.video)


def finish(panel: Any, job: Any, clock: Any = None, *, plays: bool = True) -> None:
    """Let ``job`` end (on ``clock``, a `FakeClock`, when given); a finished one must then
    play from bytes in its open player (unless ``plays`` is False: a later job's finish may
    have closed it)."""
    if clock is not None:
        clock.run_until(lambda: job.state != "running")
    else:
        wait_for(lambda: job.state != "running", f"task {job.task_id} to end")
    if job.state == "finished" and plays:
        view = panel.view(job)
        wait_for(lambda: playing_bytes(view), "the player to get the video bytes")
