"""The thread contract in a real Jupyter kernel, with the debug checks on as a user turns them on.

``RUNWAY_WIDGET_LOG=debug`` makes the views refuse widgets built off the kernel thread and
changes made outside `ui_updates.apply`; a whole job (poller, media lane, account lane) must
run through such a kernel without one refusal.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

RUN_A_JOB = """
import threading, time
from runway_widget import ApiframeClient, DemoServer, RunwayPanel
from runway_widget.widget import ui_updates

assert threading.current_thread() is threading.main_thread()
demo = DemoServer(job_seconds=1.0).start()
client = ApiframeClient(api_key=demo.api_key, base_url=demo.base_url)
panel = RunwayPanel(client=client)
panel.form.prompt.value = "checked in a kernel"
job = panel.submit()
panel.tracker.wait(job.task_id, timeout=120)
deadline = time.monotonic() + 60
while not panel.view(job).video and time.monotonic() < deadline:
    time.sleep(0.1)
panel
"""

CHECK = """
assert panel.view(job).video[4:8] == b"ftyp"
assert ui_updates.violations() == [], ui_updates.violations()
threads = ui_updates.updating_threads()
assert "runway-widget-poller" in threads, threads
assert any(name.startswith("runway-widget-media") for name in threads), threads
panel.close()
demo.stop()
"""


def test_a_job_keeps_the_thread_contract_in_a_debug_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNWAY_WIDGET_LOG", "debug")
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(tmp_path / "home"))
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(RUN_A_JOB), nbformat.v4.new_code_cell(CHECK)]
    )
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [output for cell in notebook.cells for output in cell.outputs
              if output.output_type == "error"]
    assert errors == []
    logged = "".join(output.get("text", "") for cell in notebook.cells
                     for output in cell.outputs if output.output_type == "stream")
    assert "thread contract" not in logged
