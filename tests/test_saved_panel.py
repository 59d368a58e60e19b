"""What outlives the kernel, in real kernels: the saved summary and the history of demo clips."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbconvert import HTMLExporter

pytestmark = pytest.mark.kernel

PROMPTS = ["a lighthouse in a storm", "a paper boat <b>on</b> a rainy street", "a red kite"]
FAILING = "a clip that fails"

MAKE_PANEL = "from runway_widget import RunwayPanel\n\npanel = RunwayPanel()\n"
PANEL = MAKE_PANEL + "panel"
SUBMIT = f"""\
from runway_widget.demo import shared_demo_server

for prompt in {PROMPTS!r}:
    panel.form.prompt.value = prompt
    assert panel.submit() is not None
shared_demo_server().faults.fail_rate = 1.0
panel.form.prompt.value = {FAILING!r}
assert panel.submit() is not None
shared_demo_server().faults.fail_rate = 0.0
"""
WAIT = """\
import time
from runway_widget.errors import TaskFailedError

for job in panel.jobs:
    try:
        panel.tracker.wait(job.task_id, timeout=120)
    except TaskFailedError:
        pass
time.sleep(3)  # the summary's batched update, after the posters are made
"""


def _executed_without_state(cells: list[str], folder: Path) -> nbformat.NotebookNode:
    """The cells run in a real kernel, then saved as JupyterLab does by default (no widget
    state): what GitHub, nbviewer and nbconvert read."""
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}},
    )
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    notebook.metadata.pop("widgets", None)
    return notebook


def _env(monkeypatch: pytest.MonkeyPatch, home: Path, seconds: float) -> None:
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(home))
    monkeypatch.setenv("RUNWAY_WIDGET_DEMO_SECONDS", str(seconds))
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    monkeypatch.delenv("APIFRAME_BASE_URL", raising=False)


def test_nbconvert_of_the_saved_notebook_lists_every_job_with_its_poster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved without widget state (JupyterLab's default), rendered with no kernel at all."""
    home = tmp_path / "home"
    _env(monkeypatch, home, 1.5)
    notebook = _executed_without_state([PANEL, SUBMIT, WAIT], tmp_path)
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)

    page, _ = HTMLExporter().from_notebook_node(nbformat.read(path, as_version=4))
    summary = page[page.index('class="rw-summary"'):]
    for prompt in [*PROMPTS, FAILING]:
        assert html.escape(prompt, quote=True) in summary, prompt
    assert "<b>on</b>" not in page
    assert "3 finished, 1 failed" in summary, "the summary is current, not the first display"
    posters = re.findall(r"<img [^>]*src=\"data:image/jpeg;base64,[A-Za-z0-9+/=]+\"", summary)
    assert len(posters) == 3
    assert "failed: " in summary
    kept = re.findall(r"clip: <span[^>]*>([^<]+\.mp4)</span>", summary)
    assert len(kept) == 3 and all(Path(html.unescape(p)).is_file() for p in kept)
    assert all(Path(html.unescape(p)).is_relative_to(home) for p in kept)
    assert "model not found" not in page
    assert "run the cell" in page


# -- history across a kernel restart ------------------------------------------------------


class Kernel:
    """A real kernel driven like a notebook front end, with the test's environment."""

    def __init__(self, cwd: Path) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd))
        self._connect()

    def _connect(self) -> None:
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> str:
        """Execute ``code``; its stdout, or an AssertionError with the traceback."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict) -> None:
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        self.client.execute_interactive(code, output_hook=hook, timeout=timeout)
        assert not errors, re.sub(r"\x1b\[[0-9;]*m", "", errors[0])
        return "".join(out)

    def restart(self) -> None:
        self.client.stop_channels()
        self.manager.restart_kernel(now=True)
        self._connect()

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    _env(monkeypatch, tmp_path / "home", 2.0)
    running = Kernel(tmp_path)
    yield running
    running.stop()


JOBS_AS_JSON = """\
import json
print(json.dumps({"backend": panel.client.base_url, "jobs": [
    {"id": j.task_id, "prompt": j.prompt, "state": j.state, "path": j.local_path,
     "message": j.task.message if j.task else None} for j in panel.jobs]}))
"""


def test_a_restarted_kernel_shows_the_earlier_demo_clips_and_ends_the_unfinished(
    kernel: Kernel, tmp_path: Path
) -> None:
    kernel.run(MAKE_PANEL + """\
for prompt in ["a lighthouse in a storm", "a red kite"]:
    panel.form.prompt.value = prompt
    panel.submit()
for job in panel.jobs:
    panel.tracker.wait(job.task_id, timeout=120)
import time
time.sleep(2)  # the clips are kept by the panel's background work
panel.form.prompt.value = "cut short by the restart"
panel.submit()
""")
    before = json.loads(kernel.run(JOBS_AS_JSON))
    kept = [j for j in before["jobs"] if j["state"] == "finished"]
    assert len(kept) == 2 and all(j["path"] and Path(j["path"]).is_file() for j in kept)

    kernel.restart()
    kernel.run(MAKE_PANEL)
    after = json.loads(kernel.run(JOBS_AS_JSON))

    assert after["backend"] != before["backend"], "a new kernel has a new demo server"
    states = {j["prompt"]: (j["state"], j["path"], j["message"]) for j in after["jobs"]}
    assert set(states) == {"a lighthouse in a storm", "a red kite", "cut short by the restart"}
    for prompt in ("a lighthouse in a storm", "a red kite"):
        state, path, _ = states[prompt]
        assert state == "finished" and Path(path).is_file()
    state, _, message = states["cut short by the restart"]
    assert state == "failed" and "ended with its demo backend" in message


def test_nbconvert_of_a_gateway_notebook_shows_posters_links_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs made through a workshop gateway: the kernel read its own gateway for the posters,
    the clips are linked, and no line of text sits above the summary."""
    from tests.gateway_support import demo_gateway

    _env(monkeypatch, tmp_path / "home", 0.5)
    with demo_gateway(tmp_path, job_seconds=0.5) as gateway:
        token = gateway.add_participant("alice", jobs=3)
        panel = (f"from runway_widget import ApiframeClient, RunwayPanel\n\n"
                 f"panel = RunwayPanel(client=ApiframeClient({token!r}, {gateway.base_url!r}))\n"
                 "panel")
        wait = """\
import time

for job in panel.jobs:
    panel.tracker.wait(job.task_id, timeout=120)
deadline = time.monotonic() + 60
while panel._summary.render()[0].count("data:image/jpeg") < 3 and time.monotonic() < deadline:
    time.sleep(0.1)
time.sleep(1.5)  # the summary's batched update
"""
        submit = "\n".join(["for prompt in " + repr(PROMPTS) + ":",
                            "    panel.form.prompt.value = prompt",
                            "    assert panel.submit() is not None"])
        notebook = _executed_without_state([panel, submit, wait], tmp_path)
    page, _ = HTMLExporter().from_notebook_node(notebook)
    summary = page[page.index('class="rw-summary"'):]
    assert "workshop · alice · 3 finished" in summary
    posters = re.findall(r"<img [^>]*src=\"data:image/jpeg;base64,[A-Za-z0-9+/=]+\"", summary)
    links = re.findall(r'<a href="([^"]+)"', summary)
    assert len(posters) == 3 and len(links) == 3
    assert all(link.startswith(gateway.base_url + "/videos/") for link in links)
    assert "no preview" not in summary and "needs its kernel" not in page
    # The widget's own output is an empty text, which the summary's style hides.
    assert re.search(r'data-mime-type="text/plain"[^>]*>\s*<pre></pre>', page)
