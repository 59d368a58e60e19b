"""The panel's static summary: complete, escaped, only safe sources; updated in batches."""

from __future__ import annotations

import html.parser
from collections.abc import Callable

import pytest

from runway_widget.widget.offline.saved_view import SavedView
from runway_widget.widget.offline.summary import (
    SummaryRow,
    is_safe_image_source,
    summary_html,
    summary_text,
)

POSTER = "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
HOSTILE = '<script>alert(1)</script>" onmouseover="x'


def row(**fields) -> SummaryRow:
    base = dict(task_id="t-1", prompt="a lighthouse in a storm",
                options="Text → video · gen3a_turbo · 5 s · 16:9", status="finished",
                submitted_at=1_790_000_000.0, local_path="/home/u/clips/lighthouse.mp4",
                poster=POSTER)
    base.update(fields)
    return SummaryRow(**base)


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(markup: str) -> _Tags:
    parser = _Tags()
    parser.feed(markup)
    return parser


def test_every_job_is_listed_with_prompt_settings_status_poster_and_place() -> None:
    rows = [
        row(),
        row(task_id="t-2", prompt="a paper boat", status="failed", message="out of credits",
            poster=None, local_path=None),
        row(task_id="t-3", prompt="a red kite", status="running", percentage=40, poster=None,
            local_path=None),
        row(task_id="t-4", prompt="remote clip", local_path=None,
            video_link="https://cdn.example/v.mp4", poster="https://cdn.example/p.jpg"),
    ]
    markup = summary_html(rows, backend="DEMO", saved_at=1_790_000_100.0)
    page = parse(markup)
    text = " ".join(page.text)
    for expected in ("a lighthouse in a storm", "gen3a_turbo", "/home/u/clips/lighthouse.mp4",
                     "failed: out of credits", "running when saved, 40%", "t-3",
                     "1 running, 2 finished, 1 failed", "run the cell"):
        assert expected in text
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert images == [POSTER, "https://cdn.example/p.jpg"]
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links == ["https://cdn.example/v.mp4"]
    assert markup.count('class="rw-summary"') == 1
    # Each row says its own background: a notebook's zebra stripes would make one look selected.
    styles = [attrs.get("style") for tag, attrs in page.tags if tag == "tr"]
    assert styles == ["background:none"] * 4

    plain = summary_text(rows, backend="DEMO")
    assert len(plain.splitlines()) == 5 and "lighthouse.mp4" in plain and "t-4" in plain


def test_hostile_text_is_escaped_and_unsafe_sources_dropped() -> None:
    rows = [row(prompt=HOSTILE, message=HOSTILE, status="failed", options=HOSTILE,
                local_path=HOSTILE, task_id=HOSTILE, poster="javascript:alert(1)",
                video_link="javascript:alert(1)"),
            row(task_id="t-2", poster="data:text/html;base64,PHNjcmlwdD4=",
                video_link="http://127.0.0.1:1/x.mp4 onerror=x"),
            row(task_id="t-3", poster='data:image/png;base64,AAAA" onerror="x')]
    markup = summary_html(rows, backend=HOSTILE)
    page = parse(markup)
    assert not any(tag == "script" for tag, _ in page.tags)
    for _tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs)
    assert not any(tag in ("img", "a") for tag, _ in page.tags)
    assert HOSTILE in " ".join(page.text)


@pytest.mark.parametrize(("value", "safe"), [
    ("data:image/jpeg;base64,/9j/4A==", True),
    ("data:image/png;base64,iVBORw0KGgo=", True),
    ("https://example.com/a.jpg", True),
    ("data:image/svg+xml;base64,PHN2Zz4=", False),
    ("data:image/jpeg,rawtext", False),
    ("javascript:alert(1)", False),
    ("file:///etc/passwd", False),
    (None, False),
])
def test_only_inline_jpeg_png_or_http_images(value, safe) -> None:
    assert is_safe_image_source(value) is safe


def test_no_jobs_still_says_what_this_is() -> None:
    assert "no jobs yet" in summary_html([], backend="api.apiframe.pro")
    assert "no jobs yet" in summary_text([], backend="api.apiframe.pro")


# -- the displayed summary ------------------------------------------------------------------


class FakeTimers:
    """Timers that fire only when the test says so: a fake clock for the update delay."""

    def __init__(self) -> None:
        self.started: list[tuple[float, Callable[[], None]]] = []
        self.cancelled = 0

    def __call__(self, delay: float, action: Callable[[], None]) -> FakeTimers._Timer:
        return FakeTimers._Timer(self, delay, action)

    class _Timer:
        def __init__(self, owner: FakeTimers, delay: float, action: Callable[[], None]) -> None:
            self.owner, self.delay, self.action = owner, delay, action

        def start(self) -> None:
            self.owner.started.append((self.delay, self.action))

        def cancel(self) -> None:
            self.owner.cancelled += 1

    def fire(self) -> None:
        _delay, action = self.started.pop(0)
        action()


def test_changes_are_batched_into_one_update_per_delay(monkeypatch) -> None:
    shown: list[tuple[str, dict]] = []
    monkeypatch.setattr("IPython.display.display",
                        lambda bundle, raw, display_id: shown.append(("display", bundle)))
    monkeypatch.setattr("IPython.display.update_display",
                        lambda bundle, raw, display_id: shown.append(("update", bundle)))
    monkeypatch.setattr("runway_widget.widget.offline.saved_view._in_ipython", lambda: True)
    version = [0]
    timers = FakeTimers()
    view = SavedView(lambda: (f"<p>v{version[0]}</p>", f"v{version[0]}"), delay=1.0,
                     timer=timers)

    view.changed()  # not shown yet: nothing to update
    assert timers.started == []
    view.show()
    assert shown == [("display", {"text/html": "<p>v0</p>", "text/plain": "v0"})]
    for version[0] in (1, 2, 3):
        view.changed()
    assert len(timers.started) == 1 and timers.started[0][0] == 1.0
    timers.fire()
    assert shown[-1] == ("update", {"text/html": "<p>v3</p>", "text/plain": "v3"})
    assert view.updates == 1

    version[0] = 4
    view.changed()
    view.close()  # a pending update is replaced by one last, current one
    assert timers.cancelled == 1 and shown[-1][1]["text/plain"] == "v4"
    started = len(timers.started)
    view.changed()  # closed: no more updates
    assert len(timers.started) == started and view.updates == 2


def test_a_failing_render_is_logged_not_raised(monkeypatch, caplog) -> None:
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: None)
    view = SavedView(lambda: ("<p></p>", ""), timer=FakeTimers())
    view.show()
    view._render = lambda: 1 / 0
    view.flush()
    assert "could not build the panel's summary" in caplog.text
