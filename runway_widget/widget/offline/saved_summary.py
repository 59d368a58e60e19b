"""Keeping what a panel made visible after its kernel: the saved summary and the posters.

Each job the panel shows is watched here. When what the summary says of it changes (its
status, where its clip is), the displayed summary is updated (batched by `SavedView`); when
a job finishes with its clip on disk, or on the client's own backend (a workshop gateway,
which the kernel may read), its poster is made in the posters lane, handed to the job's view
(the row's thumbnail) and put in the summary. Progress ticks change nothing here, so a
running job costs no summary updates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...models import is_http_url
from ..background import POSTERS, Lane
from ..job import FINISHED, Job
from ..job_view import JobView, options_summary
from ..media.source import MediaSource, MediaTooLarge, MediaUnavailable
from .posters import PosterCache, data_uri
from .saved_view import SavedView
from .summary import SummaryRow, summary_html, summary_text

if TYPE_CHECKING:
    from ..job import JobState

logger = logging.getLogger("runway_widget.widget.offline")

CLIP_LIMIT = 64 * 1024 * 1024  # the most of a clip read to make its poster


class SavedSummary:
    """The summary output of one panel and the posters of its jobs."""

    def __init__(
        self,
        jobs: Callable[[], list[Job]],
        *,
        backend: Callable[[], str],
        posters: PosterCache,
        media: MediaSource,
        link_dies_with_kernel: Callable[[str], bool],
        lane: Lane = POSTERS,
    ) -> None:
        """``media`` reads clips of the client's own backend; ``link_dies_with_kernel(url)``
        is True for a clip link that will not outlive the kernel (a demo backend's), which
        the summary leaves out."""
        self._jobs = jobs
        self._backend = backend
        self._posters = posters
        self._media = media
        self._link_dies = link_dies_with_kernel
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
        if state.status == FINISHED:
            self._lane.submit(("poster", id(self), view.task_id), self._make_poster, view)
        self.view.changed()

    def _make_poster(self, view: JobView) -> None:
        """From the cache, the clip on disk, or the clip's bytes read from the backend."""
        job = view.job
        data = self._posters.cached(job.task_id)
        if data is None and job.local_path:
            data = self._posters.get(job.task_id, job.local_path)
        url = job.video_url
        # (a demo's clip, whose link dies with the kernel, is kept on disk: it comes from there)
        if data is None and is_http_url(url) and not self._link_dies(str(url)):
            clip = self._read_clip(str(url))
            data = self._posters.get(job.task_id, clip) if clip is not None else None
        if data is not None:
            view.set_poster(data)
            self.view.changed()

    def _read_clip(self, url: str) -> bytes | None:
        try:
            return self._media.read_backend_url(url, CLIP_LIMIT)
        except (MediaUnavailable, MediaTooLarge) as exc:
            logger.info("no poster from %s: %s", url, exc)
            return None

    def render(self) -> tuple[str, str]:
        """The summary of the panel's jobs now, as HTML and as text."""
        rows = [self._row(job, job.snapshot()) for job in self._jobs()]
        backend = self._backend()  # it may change: an account can reveal a workshop
        return summary_html(rows, backend=backend), summary_text(rows, backend=backend)

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
            video_link=url if is_http_url(url) and not self._link_dies(str(url)) else None,
            poster=data_uri(poster) if poster else None,
        )

    def close(self) -> None:
        """Stop watching; the displayed summary gets one last update."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self.view.close()
