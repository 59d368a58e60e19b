"""The whole flow in a real browser: JupyterLab in headless Chromium, as a user meets it.

The page is cut off from every local server but JupyterLab itself, as a browser on Binder
would be from the kernel's machine, so a video that plays has come through the widget.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import browser_support as lab_ui
import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
DEMO_SECONDS = 6
SLEEP_SECONDS = 15
SLEEP_NOTEBOOK = "sleep_while_generating.ipynb"
PROMPT = "a lighthouse in a storm"


def _write_sleep_notebook(path: Path) -> None:
    """The panel, then a cell that keeps the kernel busy while a job is in flight."""
    quickstart = nbformat.read(ROOT / "notebooks" / "01_quickstart.ipynb", as_version=4)
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                # Only this panel's job: earlier notebooks' clips would list first.
                "from runway_widget import RunwayPanel\n\n"
                'panel = RunwayPanel(history="session")\npanel'
            ),
            nbformat.v4.new_code_cell(f"import time\n\ntime.sleep({SLEEP_SECONDS})"),
        ],
        metadata=quickstart.metadata,
    )
    nbformat.write(notebook, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_ui.JupyterLab]:
    lab_ui.require_browser()
    root = tmp_path_factory.mktemp("lab_root")
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    _write_sleep_notebook(root / SLEEP_NOTEBOOK)
    env = {
        "RUNWAY_WIDGET_DEMO_SECONDS": str(DEMO_SECONDS),
        "RUNWAY_WIDGET_HOME": str(tmp_path_factory.mktemp("runway_widget_home")),
    }
    with lab_ui.JupyterLab(root, tmp_path_factory.mktemp("lab_home"), env=env) as server:
        yield server


@dataclass
class Session:
    page: Any
    log: lab_ui.BrowserLog


@pytest.fixture
def session(browser: Any, lab: lab_ui.JupyterLab, tmp_path: Path) -> Iterator[Session]:
    """A fresh page, cut off from every local server but JupyterLab, its console recorded."""
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(60_000)
    log = lab_ui.watch_page(page, lab)
    try:
        yield Session(page, log)
    finally:
        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=str(tmp_path / "last_page.png"))
        print(f"last page: {tmp_path / 'last_page.png'}; console errors: {log.errors}; "
              f"requests blocked: {len(log.blocked)} {sorted(set(log.blocked))[:5]}")
        print(f"JupyterLab log tail:\n{lab.log_tail(15)}")
        context.close()


def _generate(page: Any, prompt: str) -> None:
    page.locator(".rw-panel textarea").first.fill(prompt)
    page.locator(".rw-panel button.widget-button", has_text="Generate").first.click()


def _assert_plays(page: Any) -> None:
    video = lab_ui.wait_for_playable_video(page, timeout=90)
    playback = lab_ui.play(video)
    print("playback:", playback)
    assert "error" not in playback, playback
    assert playback["readyState"] >= 2, playback
    assert playback["after"] > playback["before"], playback
    assert playback["src"].startswith("blob:"), playback


def test_quickstart_generates_and_plays_without_reaching_the_demo_server(
    session: Session, lab: lab_ui.JupyterLab, tmp_path: Path
) -> None:
    page = session.page
    started = time.monotonic()
    lab_ui.open_notebook(page, lab, "01_quickstart.ipynb")
    lab_ui.run_all(page)
    page.wait_for_selector(".rw-panel textarea")
    ready = time.monotonic()

    _generate(page, PROMPT)
    widths = lab_ui.wait_for_bar_to_move(page)
    _assert_plays(page)
    print(f"bar widths: {widths}; notebook ready {ready - started:.1f} s after opening, "
          f"video playing {time.monotonic() - ready:.1f} s after that")

    # The page really is cut off: the clip's own URL on the demo server cannot be fetched.
    # The card offers no link to a loopback URL; the header names the demo's address.
    assert page.locator(".rw-panel a[href*='/videos/']").count() == 0
    address = page.locator(".rw-panel .rw-demo-address").first.get_attribute("title")
    base_url = address.split()[2]
    task_id = re.search(r"task ([0-9a-f-]{36})", page.locator(".rw-panel").first.inner_text())[1]
    video_url = f"{base_url}/videos/{task_id}.mp4"
    reached = page.evaluate("url => fetch(url).then(() => true, () => false)", video_url)
    assert not reached and video_url in session.log.blocked, video_url

    panel = page.locator(".jp-OutputArea-output", has=page.locator(".rw-panel")).first
    assert PROMPT in panel.inner_text()
    shot = lab_ui.screenshot_path("panel.png", tmp_path)  # docs/ only when asked to refresh it
    panel.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    assert shot.parent == (ROOT / "docs" if lab_ui.refreshing_screenshots() else tmp_path)
    assert session.log.unexpected_errors() == []


def test_progress_and_video_arrive_while_another_cell_sleeps(
    session: Session, lab: lab_ui.JupyterLab
) -> None:
    page = session.page
    lab_ui.open_notebook(page, lab, SLEEP_NOTEBOOK)
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    lab_ui.run_cell(page, cells.nth(0))
    page.wait_for_selector(".rw-panel textarea")
    _generate(page, "a paper boat on a rainy street")
    page.wait_for_selector(lab_ui.PROGRESS_BAR, state="attached")

    sleeper = cells.nth(1)
    lab_ui.run_cell(page, sleeper)
    deadline = time.monotonic() + 10
    while not lab_ui.cell_is_running(sleeper):
        assert time.monotonic() < deadline, "the sleeping cell never started"
        page.wait_for_timeout(100)
    widths: list[float] = []
    video_during_sleep = False
    while lab_ui.cell_is_running(sleeper):
        widths.append(lab_ui.bar_widths(page)[0])
        video_during_sleep = video_during_sleep or lab_ui.has_playable_video(page)
        page.wait_for_timeout(500)
    print(f"bar widths during the sleep: {widths}; video during the sleep: {video_during_sleep}")

    rising = [b for a, b in itertools.pairwise(widths) if b > a]
    assert len(rising) >= 3, widths
    assert video_during_sleep, "the video should appear while the other cell still runs"
    _assert_plays(page)
    assert session.log.unexpected_errors() == []
