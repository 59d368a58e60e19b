"""Keeping what a panel made visible after its kernel: the saved summary and the posters.

Each job the panel shows is watched here. When what the summary says of it changes (its
status, where its clip is), the displayed summary is updated (batched by `SavedView`); when
a finished job's clip is on disk, its poster is made in the media lane, handed to the job's
view (the row's thumbnail) and put in the summary. Progress ticks change nothing here, so a
running job costs no summary updates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...models import is_http_url
from ..background import MEDIA, Lane
from ..job import FINISHED, Job
from ..job_view import JobView, options_summary
from .posters import PosterCache, data_uri
from .saved_view import SavedView
from .summary import SummaryRow, summary_html, summary_text

if TYPE_CHECKING:
    from ..job import JobState


class SavedSummary:
    """The summary output of one panel and the posters of its jobs."""

    def __init__(
        self,
        jobs: Callable[[], list[Job]],
        *,
        backend: str,
        posters: PosterCache,
        is_local: Callable[[str], bool],
        lane: Lane = MEDIA,
    ) -> None:
        self._jobs = jobs
        self._backend = backend
        self._posters = posters
        self._is_local = is_local
        self._lane = lane
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, str | None]] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self.view = SavedView(self.render)

    def watch(self, view: JobView) -> None:
        """Follow a job the panel now shows (kernel thread)."""
        self._unsubscribe.append(view.job.subscribe(lambda _job: self._changed(view)))
        self._changed(view)

    def _changed(self, view: JobView) -> None:
        state = view.job.snapshot()
        shown = (state.status, state.local_path)
        with self._lock:
            if self._seen.get(view.task_id) == shown:
                return
            self._seen[view.task_id] = shown
        if state.status == FINISHED and state.local_path:
            self._lane.submit(("poster", id(self), view.task_id), self._make_poster, view)
        self.view.changed()

    def _make_poster(self, view: JobView) -> None:
        data = self._posters.get(view.task_id, view.job.local_path)
        if data is not None:
            view.set_poster(data)
            self.view.changed()

    def render(self) -> tuple[str, str]:
        """The summary of the panel's jobs now, as HTML and as text."""
        rows = [self._row(job, job.snapshot()) for job in self._jobs()]
        return summary_html(rows, backend=self._backend), summary_text(rows, backend=self._backend)

    def _row(self, job: Job, state: JobState) -> SummaryRow:
        task = state.task
        url = task.video_url if task is not None else None
        poster = self._posters.cached(job.task_id) if state.status == FINISHED else None
        return SummaryRow(
            task_id=job.task_id,
            prompt=job.prompt,
            options=options_summary(job.payload) if job.payload else "options unknown",
            status=state.status,
            submitted_at=job.submitted_at,
            percentage=state.progress,
            message=task.message if task is not None else None,
            local_path=state.local_path,
            video_link=url if is_http_url(url) and not self._is_local(str(url)) else None,
            poster=data_uri(poster) if poster else None,
        )

    def close(self) -> None:
        """Stop watching; the displayed summary gets one last update."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self.view.close()
