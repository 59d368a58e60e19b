"""JupyterLab in a subprocess and a headless Chromium page that drives it like a user.

Kept apart from the tests so each scenario reads as what a user does: open a notebook,
run it, type, click, watch. Selectors and timings follow the measured facts for
JupyterLab 4 in Debian Chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-dev-shm-usage",
]
PROGRESS_BAR = ".jp-OutputArea-output .rw-job-bar .rw-job-bar-fill"
VIDEO = ".jp-OutputArea-output video"
KERNEL_IDLE = (
    ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
)
# Quiet, offline lab: no news or update toasts over the notebook, nothing fetched from outside.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


SCREENSHOTS_ENV = "RUNWAY_WIDGET_SCREENSHOTS"


def refreshing_screenshots() -> bool:
    """``RUNWAY_WIDGET_SCREENSHOTS=docs`` (or 1, true, yes) asks to refresh the docs' pictures."""
    return os.environ.get(SCREENSHOTS_ENV, "").lower() in ("docs", "1", "true", "yes")


def screenshot_path(name: str, scratch: Path) -> Path:
    """``docs/NAME`` when refreshing the docs' pictures, else ``scratch/NAME``: an ordinary
    test run never rewrites files in the repository."""
    if refreshing_screenshots():
        folder = Path(__file__).resolve().parent.parent / "docs"
    else:
        folder = scratch
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a server we started, killing it if it does not stop within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with a random port and token, settings kept in `home`."""

    app = "jupyterlab"  # the module run with ``python -m``

    def __init__(self, root_dir: Path, home: Path, env: Mapping[str, str] | None = None) -> None:
        self.root_dir = root_dir
        self.home = home
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.log_path = home / "jupyterlab.log"
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        return f"{self.base_url}/lab/tree/{name}?reset&token={self.token}"

    def start(self, timeout: float = 60.0) -> JupyterLab:
        settings = self.home / "lab-settings"
        for relative, values in LAB_SETTINGS.items():
            path = settings / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.home / "workspaces"),
            **self._extra_env,
        }
        command = [
            sys.executable, "-m", self.app,
            "--no-browser",
            "--ServerApp.open_browser=False",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, cwd=self.root_dir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        status_url = f"{self.base_url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(status_url, timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process is None:
            return
        stop_process(self._process)
        self._process = None

    def shut_down_kernels(self) -> None:
        """End every session and its kernel, as closing the notebook and its kernel does."""
        url = f"{self.base_url}/api/sessions?token={self.token}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            sessions = json.load(reply)
        for session in sessions:
            request = urllib.request.Request(
                f"{self.base_url}/api/sessions/{session['id']}?token={self.token}",
                method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()

    def kernel_state(self, notebook: str) -> str | None:
        """The execution state of the kernel attached to `notebook`, None when there is none."""
        url = f"{self.base_url}/api/sessions?token={self.token}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            sessions = json.load(reply)
        for session in sessions:
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Notebook7(JupyterLab):
    """The Notebook 7 front end (``jupyter notebook``), started and stopped the same way."""

    app = "notebook"

    def notebook_url(self, name: str) -> str:
        return f"{self.base_url}/notebooks/{name}?token={self.token}"


@dataclass
class BrowserLog:
    """What the page said: console errors, uncaught exceptions and the requests we cut off."""

    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        """Console errors other than the blocked requests' own and aborted media fetches."""
        blocked_origins = {_origin(url) for url in self.blocked}
        return [
            text
            for text in self.errors
            if "net::ERR_ABORTED" not in text
            and not any(origin in text for origin in blocked_origins)
        ]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_LOOPBACK = re.compile(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


def watch_page(page: Any, lab: JupyterLab) -> BrowserLog:
    """Record console errors and cut the page off from every local server except the lab.

    The kernel's demo backend listens on a loopback port; blocking it stands in for a
    browser on another machine (Binder), where only the Jupyter server is reachable.
    """
    log = BrowserLog()

    def on_console(message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            log.errors.append(f"console: {message.text} ({where})")

    def on_route(route: Any) -> None:
        url = route.request.url
        if _origin(url) == lab.base_url:
            route.continue_()
        else:
            log.blocked.append(url)
            route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda error: log.errors.append(f"pageerror: {error}"))
    page.route(_LOOPBACK, on_route)
    return log


def open_notebook(page: Any, lab: JupyterLab, name: str, timeout: float = 60.0) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while lab.kernel_state(name) != "idle":
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel for {name} never became idle:\n{lab.log_tail()}")
        page.wait_for_timeout(250)
    page.wait_for_selector(KERNEL_IDLE, timeout=timeout * 1000)


def run_all(page: Any) -> None:
    """Run > Run All Cells, through the menu bar like a user."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('li.lm-Menu-item[data-command="runmenu:run-all"]').click()


def run_cell(page: Any, cell: Any, timeout: float | None = None) -> None:
    """Click into a code cell's editor (within ``timeout`` ms, else Playwright's default)
    and press Shift+Enter."""
    cell.locator(".jp-InputArea-editor").click(timeout=timeout)
    page.keyboard.press("Shift+Enter")


def cell_is_running(cell: Any) -> bool:
    """A running (or queued) cell shows ``[*]`` as its prompt."""
    return "*" in cell.locator(".jp-InputPrompt").inner_text()


def bar_widths(page: Any) -> list[float]:
    """Width (percent) of every widget progress bar in the notebook's outputs."""
    return page.eval_on_selector_all(
        PROGRESS_BAR, "bars => bars.map(b => parseFloat(b.style.width) || 0)"
    )


def wait_for_bar_to_move(page: Any, timeout: float = 60.0) -> list[float]:
    """Poll the first progress bar until its width has changed to a positive value."""
    page.wait_for_selector(PROGRESS_BAR, state="attached", timeout=timeout * 1000)
    first = bar_widths(page)[0]
    seen = [first]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.wait_for_timeout(200)
        width = bar_widths(page)[0]
        if width != seen[-1]:
            seen.append(width)
        if width > 0 and width != first:
            return seen
    raise AssertionError(f"the progress bar never moved: {seen}")


PLAYBACK_PROBE = """
async video => {
  video.muted = true;
  const before = video.currentTime;
  try { await video.play(); } catch (e) { return {error: String(e)}; }
  await new Promise(resolve => setTimeout(resolve, 1200));
  return {
    readyState: video.readyState,
    before: before,
    after: video.currentTime,
    duration: video.duration,
    width: video.videoWidth,
    height: video.videoHeight,
    src: (video.currentSrc || video.src || "").slice(0, 40),
  };
}
"""


PLAYABLE = "sel => [...document.querySelectorAll(sel)].some(v => v.readyState >= 2)"


def has_playable_video(page: Any) -> bool:
    return page.evaluate(PLAYABLE, VIDEO)


def wait_for_playable_video(page: Any, timeout: float = 90.0) -> Any:
    """The first `<video>` in the outputs once it has data to play (readyState >= 2)."""
    page.wait_for_function(PLAYABLE, arg=VIDEO, timeout=timeout * 1000)
    return page.locator(VIDEO).first


def play(video: Any) -> dict[str, Any]:
    """Muted play() and how far `currentTime` advanced in about a second."""
    return video.evaluate(PLAYBACK_PROBE)


def require_browser() -> Any:
    """Playwright's ``sync_playwright``; skips the test when it or Chromium is missing."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip('playwright is missing (pip install -e ".[test]")')
    return sync_playwright


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (skips the test when it is missing)."""
    with require_browser()() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def choose_theme(page: Any, name: str) -> None:
    """Settings > Theme > ``name`` (e.g. "JupyterLab Dark"), then wait for the body to say so."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Settings$")).click()
    page.locator("li.lm-Menu-item", has_text=re.compile(r"^Theme")).first.hover()
    page.locator("li.lm-Menu-item", has_text=re.compile(f"^{re.escape(name)}$")).first.click()
    light = "false" if "Dark" in name else "true"
    page.wait_for_function(
        "light => document.body.dataset.jpThemeLight === light", arg=light, timeout=30_000
    )
    page.wait_for_timeout(500)  # the theme's stylesheet applies


# For every visible element with its own text inside `root`: its text colour against the
# nearest opaque background behind it (WCAG relative luminance, alpha blended).
CONTRAST_PROBE = """
root => {
  const rgba = s => { const m = s.match(/[\\d.]+/g) || [0, 0, 0, 0];
    return [+m[0], +m[1], +m[2], m.length > 3 ? +m[3] : 1]; };
  const lin = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3]));
  const background = el => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    const opaque = layers.length && layers[layers.length - 1][3] >= 1;
    let base = (opaque ? layers.pop() : [255, 255, 255, 1]).slice(0, 3);
    while (layers.length) base = over(layers.pop(), base);
    return base;
  };
  const out = [];
  for (const el of root.querySelectorAll("*")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest("[hidden]") || el.closest("button:disabled")) continue;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    const invisible = style.visibility === "hidden" || +style.opacity === 0;
    if (!box.width || !box.height || invisible) continue;
    const bg = background(el);
    const fg = over(rgba(style.color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    out.push({text: el.textContent.trim().slice(0, 40), ratio: (a + 0.05) / (b + 0.05),
              color: style.color, cls: el.className.toString().slice(0, 60)});
  }
  return out;
}
"""


def contrast(page: Any, selector: str) -> list[dict[str, Any]]:
    """Text contrast of every visible text element under the first ``selector``."""
    return page.locator(selector).first.evaluate(CONTRAST_PROBE)
