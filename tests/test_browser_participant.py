"""A workshop participant's JupyterLab, in headless Chromium: the quickstart after joining.

The participant ran ``runway-widget join`` (here: the same call, in the test); JupyterLab then
runs ``01_quickstart``. Its first cell names the workshop, the panel's badge reads
"workshop · alice", a clip plays (its bytes through the widget: the page cannot reach the
gateway's loopback port), and with the quota used up Generate is disabled, saying who to ask.
At 1280 and 1400 px nothing in the panel scrolls sideways. Screenshots go to the test's folder
(printed).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_support as lab_ui
import pytest

from runway_widget.client.credentials import join_gateway
from runway_widget.gateway import Limits
from tests.gateway_support import demo_gateway

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# Elements of the panel whose content is wider than they are and that scroll sideways.
SIDEWAYS_SCROLLERS = """
() => [...document.querySelectorAll('.rw-panel, .rw-panel *')].filter(el => {
  const style = getComputedStyle(el);
  return el.scrollWidth > el.clientWidth && ['auto', 'scroll'].includes(style.overflowX);
}).map(el => `${el.className} ${el.scrollWidth}>${el.clientWidth}`)
"""


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """A gateway on the demo upstream, and alice's config folder after she joined."""
    lab_ui.require_browser()
    folder = tmp_path_factory.mktemp("room")
    config = folder / "config"
    with demo_gateway(folder, job_seconds=1.0) as gateway, pytest.MonkeyPatch.context() as env:
        gateway.roster.add_join_code("ROOM-42", seats=5, limits=Limits(jobs=1))
        env.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(config))
        join_gateway(gateway.base_url, "ROOM-42", "alice")
        yield gateway, config


@pytest.fixture(scope="module")
def lab(room: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[lab_ui.JupyterLab]:
    root = tmp_path_factory.mktemp("lab_root")
    for name in ("quickstart_1280", "quickstart_1400", "quickstart_quota"):
        shutil.copy(NOTEBOOKS / "01_quickstart.ipynb", root / f"{name}.ipynb")
    env = {"RUNWAY_WIDGET_CONFIG_DIR": str(room[1]),
           "RUNWAY_WIDGET_HOME": str(tmp_path_factory.mktemp("runway_widget_home"))}
    with lab_ui.JupyterLab(root, tmp_path_factory.mktemp("lab_home"), env=env) as server:
        yield server


@contextlib.contextmanager
def _quickstart(browser: Any, lab: lab_ui.JupyterLab, name: str, width: int
                ) -> Iterator[tuple[Any, Any]]:
    """The notebook run in a fresh page ``width`` px wide, cut off from the gateway's port."""
    context = browser.new_context(viewport={"width": width, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(90_000)
    log = lab_ui.watch_page(page, lab)
    lab_ui.open_notebook(page, lab, name)
    lab_ui.run_all(page)
    page.wait_for_selector(".rw-panel textarea")
    yield page, log
    assert log.unexpected_errors() == []
    context.close()


@pytest.mark.parametrize("width", [1280, 1400])
def test_the_joined_quickstart_names_the_workshop_and_fits(
    browser: Any, room: tuple[Any, Path], lab: lab_ui.JupyterLab, tmp_path: Path, width: int
) -> None:
    gateway, _config = room
    with _quickstart(browser, lab, f"quickstart_{width}.ipynb", width) as (page, _log):
        printed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter"
                               ".stdout']").first.inner_text()
        assert printed.startswith(f"backend: the workshop gateway {gateway.base_url}, as alice")
        assert page.locator(".rw-panel .rw-badge-live").first.inner_text() == "workshop · alice"
        assert page.evaluate(SIDEWAYS_SCROLLERS) == []
        page.locator(".rw-panel").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / f"joined_{width}.png"))
    print(f"screenshots: {tmp_path}")


def test_a_used_up_quota_disables_generate_and_says_who_to_ask(
    browser: Any, room: tuple[Any, Path], lab: lab_ui.JupyterLab, tmp_path: Path
) -> None:
    with _quickstart(browser, lab, "quickstart_quota.ipynb", 1280) as (page, _log):
        page.locator(".rw-panel textarea").first.fill("a paper boat on a rainy street")
        page.locator(".rw-panel button.widget-button", has_text="Generate").first.click()
        lab_ui.wait_for_playable_video(page, timeout=90)  # alice's one job, through the widget
        # The account says no job is left: Generate waits, and says for what, before a click.
        page.locator(".rw-panel textarea").first.fill("a second paper boat")
        generate = page.locator(".rw-panel button.rw-generate").first
        page.wait_for_function("button => button.disabled", arg=generate.element_handle())
        status = page.locator(".rw-panel .rw-status").first.inner_text()
        assert status == ("No jobs left in your workshop quota: ask the instructor for more, "
                          "then press Refresh.")
        assert "quota: 0 jobs" in page.locator(".rw-panel .rw-header").first.inner_text()
        assert page.evaluate(SIDEWAYS_SCROLLERS) == []
        panel = page.locator(".jp-OutputArea-output", has=page.locator(".rw-panel")).first
        panel.scroll_into_view_if_needed()
        panel.screenshot(path=str(tmp_path / "used_up.png"))
        page.screenshot(path=str(tmp_path / "used_up_page.png"))
    print(f"screenshots: {tmp_path}")
