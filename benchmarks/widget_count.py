"""How many widget models the panel costs, and how big its saved widget state is.

Every widget model is a message to the browser, work for the page, and an entry in a notebook
saved with its widget state. Counted as the growth of ``ipywidgets.Widget.widgets``:

- an empty panel (goal ≤ 60; 187 before the view layer was rebuilt),
- each finished job, collapsed, as a new panel lists it from the history (goal ≤ 8; 43),
- each running job (submitted from the panel),
- the saved widget state of a panel with 30 finished jobs: all collapsed, with one open
  player (the latest job to finish opens its own) and with three (5 s demo clips).

    python benchmarks/widget_count.py [--jobs 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import ipywidgets as widgets
from ipywidgets.embed import embed_data

from runway_widget import ApiframeClient, DemoServer, TaskTracker
from runway_widget.store import JobStore
from runway_widget.widget import RunwayPanel

GOAL_EMPTY = 60
GOAL_PER_JOB = 8
BEFORE_EMPTY = 187
BEFORE_PER_JOB = 43


def models() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return len(widgets.Widget.widgets)


def counted(build):  # type: ignore[no-untyped-def]
    before = models()
    value = build()
    return value, models() - before


def saved_state_size(panel: RunwayPanel) -> int:
    """The JSON of the panel's widget state, as a notebook saved with it keeps it."""
    state = embed_data(views=[panel], drop_defaults=False)["manager_state"]
    return len(json.dumps(state))


def wait_for_players(panel: RunwayPanel, players: int) -> None:
    deadline = time.monotonic() + 60
    while sum(bool(view.video) for view in panel.job_list.views) < players:
        if time.monotonic() > deadline:
            raise SystemExit("the players did not get their clips")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="widget-count-"))
    with DemoServer(job_seconds=0.2) as demo:
        def client(name: str) -> ApiframeClient:
            return ApiframeClient(api_key=demo.api_key, base_url=demo.base_url,
                                  store=JobStore(folder / f"{name}.jsonl"))

        empty, empty_models = counted(lambda: RunwayPanel(client=client("empty"),
                                                          download_dir=folder))
        full_client = client("full")
        started = time.monotonic()
        ids = [full_client.imagine(prompt=f"clip {i}: a lighthouse at dusk",
                                   generation_type="text2video") for i in range(args.jobs)]
        with TaskTracker(full_client, min_interval=0.2) as tracker:
            for task_id in ids:
                tracker.wait(task_id, timeout=600)
        print(f"{args.jobs} demo jobs finished in {time.monotonic() - started:.1f} s")
        panel, full_models = counted(lambda: RunwayPanel(client=full_client,
                                                         download_dir=folder))
        per_job = (full_models - empty_models) / args.jobs
        empty.form.prompt.value = "a running job"
        _, running_models = counted(empty.submit)

        sizes = [saved_state_size(panel)]
        for players in (1, 3):
            for view in panel.job_list.views[:players]:
                view.act("open")
            wait_for_players(panel, players)
            sizes.append(saved_state_size(panel))
        for each in (empty, panel):
            each.close()

    print(f"empty panel:             {empty_models:4d} models  (goal <= {GOAL_EMPTY}; "
          f"before {BEFORE_EMPTY}: {empty_models / BEFORE_EMPTY:.2f}x)")
    print(f"finished job, collapsed: {per_job:6.1f} models  (goal <= {GOAL_PER_JOB}; "
          f"before {BEFORE_PER_JOB}: {per_job / BEFORE_PER_JOB:.2f}x)")
    print(f"running job:             {running_models:4d} models")
    shown = [f"{size / 1e6:.2f} MB with {players} open"
             for players, size in zip((0, 1, 3), sizes, strict=True)]
    print(f"saved widget state, {args.jobs} finished jobs: {', '.join(shown)}")


if __name__ == "__main__":
    main()
