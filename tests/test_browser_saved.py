"""Saved notebooks and shared servers in a real browser: what a reader sees without a kernel.

- JupyterLab, like a user: run the panel, make clips, save (no widget state, the default),
  close the kernel, open the notebook again: the jobs are listed with their posters and no
  "Error displaying widget" line shows.
- JupyterLab and Notebook 7 on a notebook saved with and without widget state: with it, the
  restored panel says its kernel is gone; without it, the summary shows.
- ``nbconvert --to html``'s page in Chromium shows every poster.
- Two visitors of one Voilà server never see each other's jobs.

Screenshots go to each test's temporary folder (printed); with ``RUNWAY_WIDGET_SCREENSHOTS=docs``
the reopened notebook's picture refreshes ``docs/reopened.png``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import browser_support as lab_ui
import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

pytestmark = pytest.mark.browser

PANEL = "from runway_widget import RunwayPanel\n\npanel = RunwayPanel()\npanel"
PROMPTS = ["a lighthouse in a storm", "a paper boat on a rainy street"]
SUMMARY_IMAGES_LOADED = """
() => { const imgs = [...document.querySelectorAll('.rw-summary img')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)
               ? imgs.length : 0; }
"""
GONE = "This panel's kernel is gone"
# The summary's rows all have one background (no zebra stripe makes one look selected).
ROW_BACKGROUNDS = """
() => [...new Set([...document.querySelectorAll('.rw-summary tr')]
                  .map(row => getComputedStyle(row).backgroundColor))]
"""
# Every widget output has drawn its widget or ended on the text ``pattern`` (ipywidgets' renderer
# writes "Loading widget..." and its errors straight into the output node).
WIDGET_OUTPUTS_SETTLED = """
pattern => { const outs = [...document.querySelectorAll('.jp-OutputArea-output.lm-Panel')];
  return outs.length > 0 && outs.every(
    out => out.children.length > 0 || new RegExp(pattern).test(out.textContent)); }
"""
# Shown outputs that are an empty text (the widget's, where it cannot show): none.
EMPTY_TEXTS_SHOWN = """
() => [...document.querySelectorAll('.jp-OutputArea-child')].filter(child =>
  child.querySelector("[data-mime-type='text/plain'] > pre:empty") && child.offsetParent).length
"""


def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"RUNWAY_WIDGET_DEMO_SECONDS": "2",
            "RUNWAY_WIDGET_HOME": str(tmp_path_factory.mktemp("runway_widget_home"))}


@pytest.fixture(scope="module")
def lab(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[lab_ui.JupyterLab]:
    """One JupyterLab for the module. Its kernels write to the module's history folder, which
    only the run-save-close test fills; the other notebooks here are opened, never run."""
    home = tmp_path_factory.mktemp("lab_home")
    env = {**env, "JUPYTER_DATA_DIR": str(home / "data")}  # where `jupyter trust` writes
    with lab_ui.JupyterLab(tmp_path_factory.mktemp("lab_root"), home, env=env) as server:
        yield server


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return tmp_path


@contextlib.contextmanager
def _page(browser: Any, server: lab_ui.JupyterLab | None = None, width: int = 1280
          ) -> Iterator[tuple[Any, lab_ui.BrowserLog]]:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    log = lab_ui.watch_page(page, server) if server is not None else lab_ui.BrowserLog()
    try:
        yield page, log
    finally:
        print(f"console errors: {log.errors}")
        context.close()


def _visible_outputs(page: Any) -> str:
    return page.locator(".jp-OutputArea").first.inner_text()


def _wait_for_restored_outputs(page: Any, server: lab_ui.JupyterLab, name: str) -> None:
    """The notebook is open, its new kernel idle and the widget manager done restoring."""
    page.goto(server.notebook_url(name))
    page.wait_for_selector(".jp-Notebook .jp-OutputArea-output", state="attached")
    deadline = time.monotonic() + 60
    while server.kernel_state(name) != "idle":
        assert time.monotonic() < deadline, server.log_tail()
        page.wait_for_timeout(250)
    # Restored from the saved state, or "model not found" once the widget manager has asked
    # the new kernel (which never ran the cell) and restored what it has.
    page.wait_for_function(WIDGET_OUTPUTS_SETTLED, arg="Error displaying widget")


# -- JupyterLab, as a user ------------------------------------------------------------------


def test_jupyterlab_run_save_close_and_reopen_shows_what_was_made(
    browser: Any, lab: lab_ui.JupyterLab, shots: Path
) -> None:
    root = lab.root_dir
    nbformat.write(_notebook([PANEL]), root / "made.ipynb")
    with _page(browser, lab) as (page, _log):
        lab_ui.open_notebook(page, lab, "made.ipynb")
        lab_ui.run_all(page)
        page.wait_for_selector(".rw-panel textarea")
        for prompt in PROMPTS:
            page.locator(".rw-panel textarea").first.fill(prompt)
            page.locator(".rw-panel button", has_text="Generate").first.click()
            page.locator(".rw-panel .rw-job", has_text=prompt).first.wait_for()
        # The summary (hidden while the panel lives) follows the jobs as they finish.
        page.wait_for_function(f"() => ({SUMMARY_IMAGES_LOADED.strip()})() === 2",
                               timeout=90_000)
        assert not page.locator(".rw-summary").first.is_visible()
        saved = _save_until_summary(page, root / "made.ipynb", posters=2, shots=shots)
        assert "widgets" not in saved.metadata, "JupyterLab saves no widget state by default"
    lab.shut_down_kernels()

    with _page(browser, lab) as (page, log):
        _wait_for_restored_outputs(page, lab, "made.ipynb")
        text = _visible_outputs(page)
        assert all(prompt in text for prompt in PROMPTS), text
        assert "2 finished" in text and "run the cell" in text
        assert "Error displaying widget" not in text and "model not found" not in text
        assert page.evaluate(SUMMARY_IMAGES_LOADED) == 2
        shot = lab_ui.screenshot_path("reopened.png", shots)
        page.locator(".jp-OutputArea").first.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        for theme in ("JupyterLab Light", "JupyterLab Dark"):
            if theme.endswith("Dark"):
                lab_ui.choose_theme(page, theme)
                page.locator(".jp-OutputArea").first.screenshot(
                    path=str(shots / "reopened_dark.png"))
            low = [c for c in lab_ui.contrast(page, ".rw-summary") if c["ratio"] < 4.5]
            assert low == [], (theme, low)
        lab_ui.choose_theme(page, "JupyterLab Light")  # the module's other tests read light
        assert log.unexpected_errors() == [] or all(
            "model not found" in e for e in log.unexpected_errors()), log.errors


def _save_until_summary(page: Any, path: Path, posters: int, shots: Path
                        ) -> nbformat.NotebookNode:
    """File > Save Notebook until the file on disk holds the summary with its posters."""
    outputs: list[Any] = []
    for _attempt in range(5):
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
        page.locator('li.lm-Menu-item[data-command="docmanager:save"]').click()
        page.wait_for_timeout(1500)
        notebook = nbformat.read(path, as_version=4)
        outputs = notebook.cells[0].get("outputs", [])
        markup = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
        if markup.count("data:image/jpeg;base64,") == posters:
            return notebook
    page.screenshot(path=str(shots / "not_saved.png"))
    raise AssertionError(f"saved outputs: {json.dumps(outputs)[:2000]}")


# -- saved elsewhere, reopened in JupyterLab and Notebook 7 ---------------------------------


@pytest.fixture(scope="module")
def executed(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> nbformat.NotebookNode:
    """The panel with two finished jobs, executed in a real kernel and saved with state."""
    folder = tmp_path_factory.mktemp("executed")
    env = {**env, "RUNWAY_WIDGET_HOME": str(folder / "home")}  # no earlier jobs
    notebook = _notebook([
        PANEL,
        f"for prompt in {PROMPTS!r}:\n    panel.form.prompt.value = prompt\n    panel.submit()",
        "import time\nfor job in panel.jobs:\n    panel.tracker.wait(job.task_id, timeout=120)"
        "\ntime.sleep(3)",
    ])
    with mock.patch.dict(os.environ, env):
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    assert "widgets" in notebook.metadata
    return notebook


@pytest.mark.parametrize("front_end", [lab_ui.JupyterLab, lab_ui.Notebook7],
                         ids=["jupyterlab", "notebook7"])
def test_reopened_without_a_kernel_the_saved_notebook_shows_its_jobs(
    browser: Any, env: dict[str, str], executed: nbformat.NotebookNode, front_end: type,
    lab: lab_ui.JupyterLab, tmp_path_factory: pytest.TempPathFactory, shots: Path
) -> None:
    if front_end is lab_ui.JupyterLab:
        server = lab
        serving: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        home = tmp_path_factory.mktemp("server_home")
        server = front_end(tmp_path_factory.mktemp("reopen_root"), home,
                           env={**env, "JUPYTER_DATA_DIR": str(home / "data")})
        serving = server
    root = server.root_dir
    with_state = copy.deepcopy(executed)
    without_state = copy.deepcopy(executed)
    without_state.metadata.pop("widgets")
    nbformat.write(with_state, root / "with_state.ipynb")
    nbformat.write(without_state, root / "without_state.ipynb")
    no_kernel = copy.deepcopy(without_state)  # a kernel not installed here: none starts
    no_kernel.metadata["kernelspec"] = {"name": "not-installed", "display_name": "Gone",
                                        "language": "not-a-language"}
    no_kernel.metadata.pop("language_info", None)
    nbformat.write(no_kernel, root / "no_kernel.ipynb")
    # Trusted, as a notebook the user saved themselves: the widget output is rendered.
    data_dir = {"JUPYTER_DATA_DIR": str(server.home / "data")}
    for name in ("with_state.ipynb", "without_state.ipynb", "no_kernel.ipynb"):
        subprocess.run([sys.executable, "-m", "jupyter", "trust", str(root / name)], check=True,
                       env={**os.environ, **data_dir}, capture_output=True)
    label = front_end.__name__.lower()
    with serving:
        with _page(browser, server) as (page, _log):
            _wait_for_restored_outputs(page, server, "without_state.ipynb")
            text = _visible_outputs(page)
            assert all(prompt in text for prompt in PROMPTS), text
            assert "Error displaying widget" not in text and GONE not in text
            assert page.evaluate(SUMMARY_IMAGES_LOADED) == 2
            assert len(page.evaluate(ROW_BACKGROUNDS)) == 1
            page.locator(".jp-OutputArea").first.screenshot(
                path=str(shots / f"{label}_without_state.png"))

        with _page(browser, server) as (page, _log):
            _wait_for_restored_outputs(page, server, "with_state.ipynb")
            page.wait_for_selector(".rw-panel")
            text = _visible_outputs(page)
            assert GONE in text, text
            assert not page.locator(".rw-summary").first.is_visible()
            page.locator(".jp-OutputArea").first.screenshot(
                path=str(shots / f"{label}_with_state.png"))

        with _page(browser, server) as (page, _log):
            # No kernel at all: the widget output would say "Loading widget..." for ever.
            page.goto(server.notebook_url("no_kernel.ipynb"))
            page.get_by_role("dialog").get_by_role("button", name="No Kernel").click()
            page.wait_for_selector(".rw-summary", state="attached")
            page.wait_for_function(WIDGET_OUTPUTS_SETTLED, arg="Loading widget")
            assert server.kernel_state("no_kernel.ipynb") is None
            text = _visible_outputs(page)
            assert all(prompt in text for prompt in PROMPTS), text
            assert "Loading widget" not in text and "Error displaying widget" not in text
            page.screenshot(path=str(shots / f"{label}_no_kernel.png"))
    print(f"screenshots: {shots}")


def test_nbconvert_page_shows_every_poster(
    browser: Any, executed: nbformat.NotebookNode, shots: Path
) -> None:
    without_state = copy.deepcopy(executed)
    without_state.metadata.pop("widgets")
    page_html, _ = HTMLExporter().from_notebook_node(without_state)
    with _page(browser, width=1000) as (page, _log):
        page.route(re.compile(r"^https?://"), lambda route: route.abort())  # offline
        page.set_content(page_html, wait_until="load")
        assert page.evaluate(SUMMARY_IMAGES_LOADED) == 2
        text = page.locator(".rw-summary").first.inner_text()
        assert all(prompt in text for prompt in PROMPTS) and "2 finished" in text
        assert len(page.evaluate(ROW_BACKGROUNDS)) == 1
        assert page.evaluate(EMPTY_TEXTS_SHOWN) == 0
        assert "needs its kernel" not in page.locator("body").inner_text()
        page.screenshot(path=str(shots / "nbconvert.png"), full_page=True)


# -- Voilà ------------------------------------------------------------------------------------


class Voila:
    """A Voilà server for one notebook on a random loopback port."""

    def __init__(self, notebook: Path, env: dict[str, str]) -> None:
        self.notebook = notebook
        self.port = lab_ui.free_port()
        self.env = env
        self.log_path = notebook.parent / "voila.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> Voila:
        command = [sys.executable, "-m", "voila", str(self.notebook), "--no-browser",
                   f"--port={self.port}", "--Voila.ip=127.0.0.1", "--show_tracebacks=True"]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=self.notebook.parent,
                                             env={**os.environ, **self.env},
                                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.skip(f"Voilà did not start:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.url + "favicon.ico", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self  # any answer: the server is up
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.__exit__()
        pytest.skip(f"Voilà did not answer within 60 s:\n{self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            lab_ui.stop_process(self._process)
            self._process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _voila_generate(page: Any, prompt: str) -> None:
    page.locator(".rw-panel textarea").first.fill(prompt)
    page.locator(".rw-panel button", has_text="Generate").first.click()
    page.wait_for_function(
        "p => [...document.querySelectorAll('.rw-panel')].some(e => e.innerText.includes(p)"
        " && /finished · \\d/.test(e.innerText))", arg=prompt, timeout=90_000)


def test_two_voila_visitors_do_not_see_each_others_jobs(
    browser: Any, env: dict[str, str], tmp_path: Path, shots: Path
) -> None:
    pytest.importorskip("voila", reason="voila is not installed (pip install -e '.[test]')")
    nbformat.write(_notebook([PANEL]), tmp_path / "dashboard.ipynb")
    env = {**env, "RUNWAY_WIDGET_HOME": str(tmp_path / "home")}  # not the lab's history
    first, second = "visitor one's private prompt", "visitor two's private prompt"
    with Voila(tmp_path / "dashboard.ipynb", env) as voila, \
            _page(browser) as (one, _), _page(browser) as (two, _):
        one.goto(voila.url)
        one.wait_for_selector(".rw-panel textarea", timeout=90_000)
        _voila_generate(one, first)

        two.goto(voila.url)  # a second visitor, after the first one's job finished
        two.wait_for_selector(".rw-panel textarea", timeout=90_000)
        two.wait_for_timeout(1500)
        assert first not in two.locator(".rw-panel").first.inner_text()
        _voila_generate(two, second)
        one.wait_for_timeout(2000)
        seen_by_one = one.locator(".rw-panel").first.inner_text()
        seen_by_two = two.locator(".rw-panel").first.inner_text()
        two.screenshot(path=str(shots / "voila_second_visitor.png"), full_page=True)
    assert second not in seen_by_one and first in seen_by_one
    assert first not in seen_by_two and second in seen_by_two
    # A dashboard visitor has no command line: no command-line hints.
    assert "runway-widget " not in seen_by_two
    # Both jobs are in the user's journal all the same: no paid job is ever lost.
    journal = (Path(env["RUNWAY_WIDGET_HOME"]) / "jobs.jsonl").read_text()
    assert first in journal and second in journal
