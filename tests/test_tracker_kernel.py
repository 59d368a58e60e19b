"""The poller inside a real Jupyter kernel: progress while a cell blocks, waits in async code."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.kernel

SETUP = """
import asyncio, threading, time
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.demo import DemoServer
from runway_widget.tracking.tracker import TaskTracker

threads_before = threading.active_count()
server = DemoServer(job_seconds=5.0)
server.start()
client = ApiframeClient(api_key=server.api_key, base_url=server.base_url)
tracker = TaskTracker(client)
updates, progress = [], []
task_id = client.imagine(prompt="a lighthouse in a storm", generation_type="text2video")
tracker.track(
    task_id,
    on_update=lambda task: updates.append((time.monotonic(), task.status)),
    on_progress=lambda value: progress.append((time.monotonic(), value)),
)
"""

BLOCK = """
sleep_started = time.monotonic()
time.sleep(8)
sleep_ended = time.monotonic()
"""

CHECK = """
during = [u for u in updates if sleep_started < u[0] < sleep_ended]
moving = [p for p in progress if sleep_started < p[0] < sleep_ended]
assert len(during) >= 2, updates
assert len(moving) >= 4, progress
assert updates[-1][1] == "finished", updates
"""

WAIT_IN_ASYNC_CODE = """
second = client.imagine(prompt="a lighthouse in a storm", generation_type="text2video")

async def from_async_code():
    await asyncio.sleep(0)
    return tracker.wait(second, timeout=60)

assert asyncio.get_running_loop().is_running()
assert (await from_async_code()).is_finished
"""

NEST_ASYNCIO = """
import nest_asyncio
nest_asyncio.apply()
third = client.imagine(prompt="a lighthouse in a storm", generation_type="text2video")
result = asyncio.get_event_loop().run_until_complete(tracker.wait_async(third, timeout=60))
assert result.is_finished
await asyncio.sleep(0)
assert tracker.wait(third, timeout=1).is_finished
"""

TEARDOWN = """
tracker.stop()
client.close()
server.stop()
assert not [t for t in threading.enumerate() if t.name == "runway-widget-poller"]
"""


def test_progress_keeps_moving_while_a_cell_blocks_and_waits_work_in_async_code(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source)
        for source in (SETUP, BLOCK, CHECK, WAIT_IN_ASYNC_CODE, NEST_ASYNCIO, TEARDOWN)
    ]
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure
