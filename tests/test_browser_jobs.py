"""Thirty finished jobs in a real JupyterLab: compact rows, one click to play, a gallery,
readable in the light and dark themes, usable 500 px wide.

The jobs run on a demo backend started inside the notebook; the panel then lists them from
the job history, as after a restart. Screenshots go to the test's temporary folder (``docs/``
with ``RUNWAY_WIDGET_SCREENSHOTS=1``); each path is printed so it can be looked at.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import browser_support as lab_ui
import nbformat
import pytest

pytestmark = pytest.mark.browser

JOBS = 30
HOSTILE = "<img src=x onerror=window.__rwInjected=1><b>bold</b>"
NOTEBOOK = "thirty_jobs.ipynb"
MAKE_JOBS = f"""\
from runway_widget import ApiframeClient, DemoServer, RunwayPanel, TaskTracker

demo = DemoServer(job_seconds=0.3).start()
client = ApiframeClient(api_key=demo.api_key, base_url=demo.base_url)
prompts = [f"clip {{i:02d}}: a lighthouse at dusk, waves, camera slowly circling, " +
           ("a long prompt that wraps " if i % 3 == 0 else "") + "cinematic light"
           for i in range({JOBS})]
prompts[0] += " {HOSTILE}"
ids = [client.imagine(prompt=p, generation_type="text2video", duration=5) for p in prompts]
with TaskTracker(client, min_interval=0.2) as tracker:
    finished = [tracker.wait(task_id, timeout=600).status for task_id in ids]
finished.count("finished")
"""
SHOW_PANEL = "panel = RunwayPanel(client=client)\npanel"
DASHBOARD = "dashboard.ipynb"
DASHBOARD_PANEL = """\
from runway_widget import ApiframeClient, DemoServer, RunwayPanel

demo = DemoServer(job_seconds=1).start()
client = ApiframeClient(api_key=demo.api_key, base_url=demo.base_url)
RunwayPanel(client=client, dashboard=True)
"""

# Notes when each kernel message carrying a widget output reaches the page.
OUTPUT_ARRIVALS = """
(() => {
  const Original = window.WebSocket;
  window.__rwOutputs = [];
  const scan = (at, text) => {
    if (text.includes("application/vnd.jupyter.widget-view+json")) window.__rwOutputs.push(at);
  };
  window.WebSocket = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", event => {
        const at = performance.now();
        const data = event.data;
        if (typeof data === "string") scan(at, data);
        else if (data instanceof ArrayBuffer) scan(at, new TextDecoder().decode(data));
        else if (data instanceof Blob) data.text().then(text => scan(at, text));
      });
    }
  };
})();
"""
# Resolves once the panel cell's rows are all drawn: the time from the output's arrival.
RENDER_TIMER = """
([cellIndex, jobs]) => {
  const cell = document.querySelectorAll(
    ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")[cellIndex];
  const start = performance.now();
  window.__rwRender = new Promise(resolve => {
    const tick = () => {
      const rows = cell.querySelectorAll(".rw-job").length;
      if (rows >= jobs && cell.querySelector(".rw-panel textarea")) {
        const drawn = performance.now();
        const arrived = window.__rwOutputs.find(at => at >= start);
        resolve({ms: drawn - arrived, rows});
      } else {
        requestAnimationFrame(tick);
      }
    };
    tick();
  });
}
"""


# Scrolls the notebook down in steps while recording the time between painted frames.
SCROLL_PROBE = """
async scroller => {
  const gaps = [];
  let last = performance.now();
  let running = true;
  const frame = now => {
    gaps.push(now - last);
    last = now;
    if (running) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  for (let step = 0; step < 40; step++) {
    scroller.scrollTop += 120;
    await new Promise(resolve => setTimeout(resolve, 16));
  }
  running = false;
  gaps.sort((a, b) => a - b);
  const at = q => Math.round(gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * q))]);
  return {frames: gaps.length, p50: at(0.5), p95: at(0.95), max: at(1)};
}
"""


@dataclass
class Session:
    page: Any
    log: lab_ui.BrowserLog
    shots: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_ui.JupyterLab]:
    lab_ui.require_browser()
    root = tmp_path_factory.mktemp("lab_root")
    for name, cells in ((NOTEBOOK, (MAKE_JOBS, SHOW_PANEL)), (DASHBOARD, (DASHBOARD_PANEL,))):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, root / name)
    env = {"RUNWAY_WIDGET_HOME": str(tmp_path_factory.mktemp("runway_widget_home"))}
    with lab_ui.JupyterLab(root, tmp_path_factory.mktemp("lab_home"), env=env) as server:
        yield server


@pytest.fixture
def session(browser: Any, lab: lab_ui.JupyterLab, tmp_path: Path) -> Iterator[Session]:
    """A fresh browser context (no cookies, storage or pages of the test before)."""
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    context.add_init_script(OUTPUT_ARRIVALS)
    page = context.new_page()
    page.set_default_timeout(120_000)
    log = lab_ui.watch_page(page, lab)
    try:
        yield Session(page, log, tmp_path)
    finally:
        with contextlib.suppress(PlaywrightError):
            page.screenshot(path=str(tmp_path / "last_page.png"))
        print(f"console errors: {log.errors}; JupyterLab log tail:\n{lab.log_tail(10)}")
        context.close()


def _shoot(session: Session, name: str) -> None:
    path = lab_ui.screenshot_path(f"{name}.png", session.shots)
    session.page.locator(".jp-OutputArea-output", has=session.page.locator(".rw-panel")
                         ).first.screenshot(path=str(path))
    print(f"screenshot: {path}")


def _assert_readable(session: Session, theme: str) -> None:
    report = lab_ui.contrast(session.page, ".rw-panel")
    worst = sorted(report, key=lambda item: item["ratio"])[:5]
    print(f"{theme}: {len(report)} text elements, lowest contrast "
          f"{[(w['text'], round(w['ratio'], 2), w['cls']) for w in worst]}")
    assert len(report) > 50, report
    low = [item for item in report if item["ratio"] < 4.5]
    assert low == [], low


def test_thirty_finished_jobs_at_a_glance(session: Session, lab: lab_ui.JupyterLab) -> None:
    page = session.page
    lab_ui.open_notebook(page, lab, NOTEBOOK)
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
    lab_ui.run_cell(page, cells.nth(0))
    page.wait_for_function(
        "n => [...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(o => o.textContent.trim() === String(n))", arg=JOBS, timeout=600_000)

    page.evaluate(RENDER_TIMER, [1, JOBS])
    lab_ui.run_cell(page, cells.nth(1))
    rendered = page.evaluate("() => window.__rwRender")
    print(f"render: {rendered['rows']} job rows drawn {rendered['ms']:.0f} ms after the "
          "panel's output arrived")
    panel = page.locator(".rw-panel").first
    rows = panel.locator(".rw-job")
    assert rows.count() == JOBS
    heights = rows.evaluate_all("rows => rows.map(r => r.getBoundingClientRect().height)")
    print(f"collapsed row heights: min {min(heights):.0f} px, max {max(heights):.0f} px; "
          f"panel height {panel.bounding_box()['height']:.0f} px")
    assert max(heights) <= 80, heights
    assert panel.locator("video").count() == 0  # no clip on the page until one is opened
    # A prompt with markup in it is shown as text, never parsed.
    assert HOSTILE in panel.inner_text()
    assert panel.locator("img[src='x'], b:text('bold')").count() == 0
    assert page.evaluate("() => window.__rwInjected") is None
    _shoot(session, "thirty_collapsed")
    scroller = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer")
    frames = scroller.first.evaluate(SCROLL_PROBE)
    print(f"scrolling past 30 rows: frame gaps p50 {frames['p50']} ms, p95 {frames['p95']} ms, "
          f"max {frames['max']} ms over {frames['frames']} frames")
    scroller.first.evaluate("s => { s.scrollTop = 0; }")

    first = rows.nth(0)
    first.locator(".rw-job-toggle").click()
    video = first.locator("video")
    video.wait_for(timeout=60_000)
    page.wait_for_function("v => v.readyState >= 2", arg=video.element_handle())
    playback = lab_ui.play(video)
    print("playback:", playback)
    assert playback["src"].startswith("blob:") and playback["after"] > playback["before"]
    _shoot(session, "one_open")
    first.locator(".rw-job-toggle").click()
    page.wait_for_function("row => !row.querySelector('video')", arg=first.element_handle())

    panel.locator(".rw-view-mode button", has_text="Gallery").click()
    page.wait_for_function("() => document.querySelector('.rw-jobs.rw-gallery')")
    tops = rows.evaluate_all("rows => rows.slice(0, 4).map(r => r.getBoundingClientRect().top)")
    lefts = rows.evaluate_all("rows => rows.slice(0, 4).map(r => r.getBoundingClientRect().left)")
    print(f"gallery: first tiles at tops {tops}, lefts {lefts}")
    assert len({round(t) for t in tops[:2]}) == 1 and lefts[1] > lefts[0], (tops, lefts)
    rows.nth(1).locator(".rw-job-toggle").click()
    rows.nth(1).locator("video").wait_for(timeout=60_000)
    _shoot(session, "gallery")
    _assert_readable(session, "light")

    lab_ui.choose_theme(page, "JupyterLab Dark")
    _assert_readable(session, "dark")
    _shoot(session, "gallery_dark")
    panel.locator(".rw-view-mode button", has_text="List").click()

    # The notebook's own chrome (prompts, margins) takes the rest of the window.
    chrome = 1280 - panel.bounding_box()["width"]
    page.set_viewport_size({"width": round(500 + chrome), "height": 1400})
    page.wait_for_timeout(800)
    overflow = panel.evaluate("p => p.scrollWidth - p.clientWidth")
    width = panel.bounding_box()["width"]
    print(f"narrow: panel {width:.0f} px wide, horizontal overflow {overflow} px")
    assert abs(width - 500) <= 10 and overflow <= 1
    for field in (".widget-textarea", ".widget-dropdown"):
        control = panel.locator(f".rw-form {field}").first
        label = control.locator(".widget-label").first.bounding_box()
        box = control.locator("textarea, select").first.bounding_box()
        assert label["x"] + label["width"] <= box["x"] + 1, (field, label, box)
        assert abs(label["y"] - box["y"]) < 20, (field, label, box)  # beside, not above
    _shoot(session, "narrow_dark")
    _assert_readable(session, "dark, 500 px")
    lab_ui.choose_theme(page, "JupyterLab Light")
    time.sleep(0.2)
    assert session.log.unexpected_errors() == []


def test_a_dashboard_offers_the_clip_as_a_browser_download(
    session: Session, lab: lab_ui.JupyterLab
) -> None:
    page = session.page
    lab_ui.open_notebook(page, lab, DASHBOARD)
    lab_ui.run_all(page)
    panel = page.locator(".rw-panel").first
    panel.locator("textarea").fill("a clip to take home")
    panel.locator("button.widget-button", has_text="Generate").click()
    lab_ui.wait_for_playable_video(page)
    save = panel.locator(".rw-job-btn-save")
    assert save.inner_text() == "Download"
    with page.expect_download() as event:
        save.click()
    download = event.value
    target = session.shots / download.suggested_filename
    download.save_as(str(target))
    data = target.read_bytes()
    print(f"downloaded {download.suggested_filename}: {len(data)} bytes")
    assert download.suggested_filename.endswith(".mp4") and data[4:8] == b"ftyp"
    assert "runway-widget" not in panel.inner_text()  # no command-line hints on a dashboard
    assert session.log.unexpected_errors() == []
