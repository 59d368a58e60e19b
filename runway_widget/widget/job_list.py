"""The panel's jobs: running ones on top, then newest first, as rows or as a gallery.

Views are appended to one box and never reordered there (a reordered box re-creates the
views after the first change, restarting their players); where each one shows is its
layout's CSS ``order``, recomputed whenever a job starts or stops running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import ipywidgets as widgets

from . import ui_updates
from .job import RUNNING, Job
from .job_view import JobView
from .shared_models import SharedModels

VIEW_MODES = (("List", "list"), ("Gallery", "gallery"))


class JobList(widgets.VBox):
    """Job views with a list/gallery switch; ``make_view`` builds the view of a job."""

    def __init__(self, make_view: Callable[[Job], JobView], shared: SharedModels,
                 on_change: Callable[[], object] | None = None) -> None:
        self._make_view = make_view
        self._on_change = on_change
        self._lock = threading.Lock()
        self._views: list[JobView] = []
        self._by_id: dict[str, JobView] = {}
        self.mode = widgets.ToggleButtons(
            options=VIEW_MODES, value="list", description="Jobs",
            tooltips=["Compact rows", "Clips side by side"],
            layout=shared.layout, style=shared.toggles,
        )
        self.mode.add_class("rw-view-mode")
        self.mode.observe(self._on_mode, names="value")
        self.box = shared.box([], "rw-jobs")
        super().__init__([self.mode, self.box], layout=shared.layout)
        self.add_class("rw-section")

    # ----- adding (kernel thread) ---------------------------------------------------------------

    def add(self, jobs: Iterable[Job]) -> list[JobView]:
        """Build and show views for ``jobs`` (already shown ones are returned as they are)."""
        added: list[JobView] = []
        result: list[JobView] = []
        for job in jobs:
            view = self._by_id.get(job.task_id)
            if view is None:
                view = self._make_view(job)
                job.subscribe(self._on_job_change)
                added.append(view)
                with self._lock:
                    self._views.append(view)
                    self._by_id[job.task_id] = view
            result.append(view)
        if added:
            children = (*self.box.children, *added)
            ui_updates.apply(lambda: setattr(self.box, "children", children))
            self._place()
        return result

    def view(self, task_id: str) -> JobView | None:
        with self._lock:
            return self._by_id.get(task_id)

    @property
    def views(self) -> list[JobView]:
        """Views in the order shown: running first, then newest first."""
        with self._lock:
            return sorted(self._views, key=_rank)

    @property
    def jobs(self) -> list[Job]:
        return [view.job for view in self.views]

    # ----- reacting (any thread) -------------------------------------------------------------

    def _on_job_change(self, _job: Job) -> None:
        self._place()
        if self._on_change is not None:
            self._on_change()

    def _place(self) -> None:
        """Give each view its CSS order; only the orders that changed are sent."""

        def place() -> None:
            for index, view in enumerate(self.views):
                if view.layout.order != str(index):
                    view.layout.order = str(index)

        ui_updates.apply(place)

    def _on_mode(self, change: dict[str, object]) -> None:
        if change["new"] == "gallery":
            self.box.add_class("rw-gallery")
        else:
            self.box.remove_class("rw-gallery")

    def close(self) -> None:
        with self._lock:
            views = list(self._views)
        for view in views:
            view.close()
        super().close()


def _rank(view: JobView) -> tuple[bool, float]:
    job = view.job
    return (job.state != RUNNING, -job.submitted_at)
