"""Earlier jobs from the job history: the recent ones shown at once, older ones on request."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..errors import plural
from ..models import Task
from . import html, ui_updates
from .earlier_jobs import select, settle_demo_jobs
from .job import Job
from .shared_models import SharedModels, set_shown

if TYPE_CHECKING:
    from ..client.apiframe import ApiframeClient
    from ..store import JobRecord

VISIBLE_HISTORY = 30
EARLIER_LIMIT = 100


def job_from_record(record: JobRecord) -> Job:
    """A `Job` in the state the history last saw."""
    job = Job(record.task_id, record.request, backend=record.backend,
              submitted_at=record.submitted_at or None, local_path=record.local_path,
              checked=record.is_done)
    if record.status != "submitted":
        job.apply(Task(record.task_id, record.status, record.percentage, record.video_url,
                       record.message), when=record.updated_at or None)
    return job


class HistorySection(widgets.VBox):
    """The "Show N earlier jobs" button and notes about the history."""

    def __init__(self, on_show: Callable[[list[JobRecord]], object], shared: SharedModels, *,
                 dashboard: bool = False) -> None:
        self._on_show = on_show
        self._dashboard = dashboard
        self._earlier: list[JobRecord] = []
        self.earlier_button = shared.button_widget("", icon="history",
                                                   tooltip="Older jobs of the history")
        set_shown(self.earlier_button, False)
        self.earlier_button.on_click(lambda _: self.show_earlier())
        self.note = shared.html_widget()
        super().__init__([self.earlier_button, self.note], layout=shared.layout)

    def load(self, client: ApiframeClient, mode: str = "user") -> list[JobRecord]:
        """The jobs to show now (recent and unfinished); the rest wait.

        ``mode`` "session": none (a shared server); "user": this backend's, or on the demo
        backend every demo job, the unfinished ones of stopped demo servers marked ended.
        """
        if mode == "session":
            return []
        try:
            history = client.store.load()
        except Exception as exc:
            self.note.value = html.span(f"job history unreadable: {exc}", "rw-error")
            return []
        chosen = select(history, backend=client.base_url, demo=client.is_demo)
        mine = chosen.jobs
        if client.is_demo:
            mine = settle_demo_jobs(mine, backend=client.base_url, store=client.store)
        head, rest = mine[:VISIBLE_HISTORY], mine[VISIBLE_HISTORY:]
        self._earlier = [r for r in rest if r.is_done]
        if self._earlier:
            self.earlier_button.description = f"Show {plural(len(self._earlier), 'earlier job')}"
            set_shown(self.earlier_button, True)
        notes = []
        if chosen.others:
            notes.append(f"{plural(chosen.others, 'job')} from other backends not shown"
                         + self._command(" history --all"))
        if history.skipped:
            notes.append(f"{plural(len(history.skipped), 'unreadable line')} in "
                         f"{client.store.path}")
        self.note.value = _muted(" · ".join(notes)) if notes else ""
        return head + [r for r in rest if not r.is_done]

    def _command(self, args: str) -> str:
        """A command-line hint, except on a dashboard (its visitors have no command line)."""
        return "" if self._dashboard else f": `runway-widget{args}`"

    def show_earlier(self) -> None:
        """Add the earlier jobs to the list (up to `EARLIER_LIMIT`)."""
        shown, hidden = self._earlier[:EARLIER_LIMIT], len(self._earlier) - EARLIER_LIMIT
        self._earlier = []

        def update() -> None:
            set_shown(self.earlier_button, False)
            if hidden > 0:
                self.note.value = _muted(
                    f"{plural(hidden, 'older job')} not shown" + self._command(" history"))

        ui_updates.apply(update)
        self._on_show(shown)


def _muted(text: str) -> str:
    """A note in the muted style, its quoted commands as code."""
    return f'<span class="rw-muted">{html.prose(text)}</span>'
