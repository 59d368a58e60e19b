"""How big a notebook gets when saved with widget state after thirty demo jobs.

Executes, in a real kernel (nbclient, which always saves widget state), a notebook that
shows a `RunwayPanel`, generates ``--jobs`` clips on the demo backend and waits for all of
them; then writes it and prints its size, split into widget state and outputs. The goal is
at most 1 MB for 30 jobs.

The baseline, run in the same process on the very same clips, is what the panel did before
jobs collapsed: every finished job kept a player holding its clip's bytes (an
``ipywidgets.Video`` per job) in the widget state.

    python benchmarks/saved_notebook_size.py [--jobs 30] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient

GOAL_BYTES = 1_000_000
PROMPTS = ["a lighthouse in a storm", "a paper boat on a rainy street", "a red kite over hills",
           "a city at night from above", "a cat asleep in the sun", "waves on black sand"]

PANEL = "from runway_widget import RunwayPanel\n\npanel = RunwayPanel()\npanel"
SUBMIT = """\
prompts = {prompts!r}
for n in range({jobs}):
    panel.form.prompt.value = f"{{prompts[n % len(prompts)]}} #{{n + 1}}"
    assert panel.submit() is not None, panel.form.problems()
"""
WAIT = """\
import time
for job in panel.jobs:
    panel.tracker.wait(job.task_id, timeout=600)
deadline = time.monotonic() + 300  # finished demo clips are kept, then get their posters
while time.monotonic() < deadline and not all(job.local_path for job in panel.jobs):
    time.sleep(0.5)
time.sleep(3)  # the summary's batched update
print(sum(job.state == "finished" for job in panel.jobs), "finished")
"""
BASELINE = """\
import ipywidgets as widgets
from pathlib import Path
clips = sorted(Path({folder!r}).glob("*.mp4"))
widgets.VBox([widgets.Video(value=path.read_bytes(), format="mp4") for path in clips])
"""


def _run(cells: list[str], folder: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    with mock.patch.dict(os.environ, env):
        NotebookClient(notebook, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    return notebook


def _sizes(notebook: nbformat.NotebookNode, path: Path) -> dict[str, int]:
    nbformat.write(notebook, path)
    state = notebook.metadata.get("widgets", {})
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    return {
        "file": path.stat().st_size,
        "widget_state": len(json.dumps(state)),
        "outputs": len(json.dumps(outputs)),
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.5, help="demo job run time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="saved-size-") as scratch:
        root = Path(scratch)
        home = root / "home"
        env = {"RUNWAY_WIDGET_HOME": str(home),
               "RUNWAY_WIDGET_DEMO_SECONDS": str(args.seconds)}
        os.environ.pop("APIFRAME_API_KEY", None)
        os.environ.pop("APIFRAME_BASE_URL", None)
        started = time.monotonic()
        panel = _run([PANEL, SUBMIT.format(prompts=PROMPTS, jobs=args.jobs), WAIT], root, env)
        took = time.monotonic() - started
        finished = panel.cells[2].outputs[0]["text"].strip()
        measured = _sizes(panel, root / "panel.ipynb")

        clips = sorted({*home.rglob("*.mp4"), *root.glob("runway_videos/*.mp4")})
        folder = root / "baseline_clips"
        folder.mkdir()
        for clip in clips:
            (folder / clip.name).write_bytes(clip.read_bytes())
        baseline = _sizes(_run([BASELINE.format(folder=str(folder))], root, env),
                          root / "baseline.ipynb")

    print(f"{args.jobs} demo jobs ({finished}, {args.seconds:g} s each), run in {took:.0f} s")
    print(f"  panel notebook   {_mb(measured['file'])}  (widget state "
          f"{_mb(measured['widget_state'])}, outputs {_mb(measured['outputs'])})")
    print(f"  baseline         {_mb(baseline['file'])}  (every clip in a player: "
          f"{len(clips)} clips, widget state {_mb(baseline['widget_state'])})")
    ratio = measured["file"] / baseline["file"] if baseline["file"] else float("nan")
    verdict = "meets" if measured["file"] <= GOAL_BYTES else "misses"
    print(f"  ratio            {ratio:.3f} of the baseline; {verdict} the 1 MB goal")


if __name__ == "__main__":
    main()
