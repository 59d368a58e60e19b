"""`RunwayPanel`: a header, a banner, the form, the job list and the history, wired together.

Threads: the panel and every view are built on the kernel's main thread (construction, a
click, `attach`). The tracker's poller and webhook threads update `Job`s; the views follow
their jobs through `ui_updates`. Slow work (credits, clip bytes, saving) runs in the lanes of
`background`, so the poller never waits on it and one kind cannot starve another.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .._http.addresses import is_same_origin
from ..errors import ApiframeError, QuotaExceededError
from ..models import QuotaLimit, Task, is_http_url
from . import ui_updates
from .background import MEDIA, account_lane
from .banner import Banner
from .earlier_jobs import history_mode, in_voila
from .form import GenerationForm
from .header import QUOTA_USED_UP, Header, quota_used_up
from .history import HistorySection, job_from_record
from .job import FINISHED, RUNNING, Job
from .job_list import JobList
from .job_view import JobView
from .lifecycle import close_tree
from .media.players import Players
from .media.saving import ClipSaver
from .media.source import MediaSource
from .offline.posters import PosterCache
from .offline.saved_summary import SavedSummary
from .shared_models import SharedModels
from .submission import Submitter

if TYPE_CHECKING:
    from ..client.apiframe import ApiframeClient
    from ..store import JobRecord
    from ..tracking.tracker import TaskTracker, TrackHandle
    from ..tracking.webhooks import WebhookReceiver

logger = logging.getLogger("runway_widget.widget")


def _default_client() -> ApiframeClient:
    from ..client.apiframe import ApiframeClient

    client = ApiframeClient()  # a key from the environment, a hub or `runway-widget join`
    if client.api_key:
        return client
    return ApiframeClient.demo()


class RunwayPanel(widgets.VBox):
    """Generate Runway videos from a notebook: form, live jobs, inline players, a gallery.

    ``client``: an `ApiframeClient`; by default one from ``APIFRAME_API_KEY``, or the shared
    demo backend when no key is set (the header then shows a DEMO badge).
    ``tracker``: a `TaskTracker` to follow jobs with (default: a new one, stopped by `close`).
    ``auto_download``: save every finished video into ``download_dir``.
    ``webhooks``: a started `WebhookReceiver`; the form offers "receive updates here".
    ``dashboard``: for visitors of a dashboard: no command-line hints, and Save downloads the
    clip in the visitor's browser (default: True under Voilà).
    ``history``: ``"user"`` lists the user's earlier jobs (on the demo backend, those of every
    earlier demo server); ``"session"`` only what this panel submits, for servers shared by
    several people (default: ``"session"`` under Voilà, else ``"user"``).

    Displayed, the panel also shows a static summary of its jobs (posters included), kept
    current as they change: what a saved notebook shows where the widget cannot run.
    Finished demo clips are kept in the history's folder, so they outlive the kernel.
    """

    def __init__(
        self,
        client: ApiframeClient | None = None,
        tracker: TaskTracker | None = None,
        auto_download: bool = False,
        *,
        download_dir: str | os.PathLike[str] = "runway_videos",
        webhooks: WebhookReceiver | None = None,
        dashboard: bool | None = None,
        history: str | None = None,
    ) -> None:
        from ..tracking.tracker import TaskTracker

        self.history_mode = history_mode(history)
        self.client = client if client is not None else _default_client()
        self._own_tracker = tracker is None
        self.tracker = tracker if tracker is not None else TaskTracker(
            self.client, webhooks=webhooks
        )
        self.auto_download = auto_download
        self._saver = ClipSaver(self.client, Path(download_dir))
        self.webhooks = webhooks
        self.dashboard = dashboard = in_voila() if dashboard is None else dashboard
        # Demo clips live in the demo server's temporary folder, gone with the kernel.
        self._keeper = ClipSaver(self.client, self.client.store.folder / "clips")
        self._media = MediaSource(self.client.is_own_backend,
                                  is_backend=lambda url: is_same_origin(self.client.base_url, url),
                                  transport=self.client.transport)
        self._players = Players(self._media)
        self._handles: dict[str, TrackHandle] = {}
        self._closed = False

        shared = SharedModels()
        self.header = Header(self.client, self.refresh, shared, on_account=self._on_account)
        self._banner = Banner(shared, dashboard=dashboard)
        self.form = GenerationForm(
            media=self._media, upload=self.client.upload_image,
            upload_lane=account_lane(self.client.base_url), webhooks=webhooks, shared=shared
        )
        self._submitter = Submitter(self.client, self.form, self._banner, self._sent,
                                    on_refused=self._refused)
        self.form.on_submit(self._submitter.click)
        self.job_list = JobList(self._make_view, shared, on_change=self._show_counts)
        self.history = HistorySection(self._add_records, shared, dashboard=dashboard)
        self._summary = SavedSummary(
            lambda: self.jobs, backend=lambda: self.header.backend_label,
            posters=PosterCache(self.client.store.folder / "posters"), media=self._media,
            link_dies_with_kernel=lambda url: self.client.is_demo and self._media.is_local(url))
        super().__init__([self.header, self._banner, self.form, self.job_list, self.history],
                         layout=shared.layout)
        self.add_class("rw-panel")
        self._add_records(self.history.load(self.client, self.history_mode))
        self.header.refresh_credits()

    # ----- submitting -----------------------------------------------------------------------

    def submit(self) -> Job | None:
        """What Generate does: validate, send, show the job; returns it.

        Raises `ValidationError` when the form (or the service) finds problems; they are
        shown next to the form too. Returns None when nothing was sent for another reason
        (the banner says why), or at once while another submit is in flight.
        """
        return self._submitter.submit()

    def _sent(self, job: Job) -> None:
        self._show([job], live=True)
        self._banner.warn_if_history_fails(self.client.store)
        self.header.refresh_credits()

    def _refused(self, exc: ApiframeError) -> None:
        """A quota refusal: Generate waits for more quota (the account says when)."""
        if isinstance(exc, QuotaExceededError):
            if exc.limit == QuotaLimit.JOBS.value:
                self.form.block(QUOTA_USED_UP)
            self.header.refresh_credits()

    def _on_account(self, info: dict[str, Any]) -> None:
        """Generate is disabled while a workshop quota has nothing left (any thread)."""
        self.form.block(quota_used_up(info))

    # ----- jobs -----------------------------------------------------------------------------

    def _make_view(self, job: Job) -> JobView:
        return JobView(
            job,
            on_action={
                "open": self._players.open,
                "close": self._players.close,
                "save": self._players.open if self.dashboard else self._on_save_click,
                "use": self._use_as_input,
                "retry": lambda view: self._submitter.retry(view.job.request),
                "cancel": self._on_cancel_click,
            },
            is_browser_reachable=lambda url: not self._media.is_local(url),
            dashboard=self.dashboard,
        )

    def _show(self, jobs: list[Job], *, live: bool) -> list[JobView]:
        """Show ``jobs`` and follow the unfinished ones; ``live`` ones open when they finish."""
        views = self.job_list.add(jobs)
        for view in views:
            self._summary.watch(view)
            if view.job.state == RUNNING and view.task_id not in self._handles:
                self._follow(view)
            elif live and view.job.state == FINISHED:
                self._finished(view)
        self._show_counts()
        return views

    def _add_records(self, records: list[JobRecord]) -> None:
        self._show([job_from_record(record) for record in records], live=False)

    def _follow(self, view: JobView) -> None:
        job = view.job

        def on_update(task: Task) -> None:
            if job.apply(task) and task.is_finished:
                self._finished(view)

        try:
            handle = self.tracker.track(job.task_id, on_update=on_update,
                                        on_progress=job.advance)
        except ApiframeError as exc:
            job.note_problem(f"not followed: {exc}")
            return
        self._handles[job.task_id] = handle

    def _finished(self, view: JobView) -> None:
        """A job finished while the panel watched: save it if asked, then open its player."""
        if self._closed:
            return
        self._banner.warn_if_history_fails(self.client.store)
        saver = self._saver if self.auto_download else self._keeper if self.client.is_demo \
            else None
        if saver is not None and is_http_url(view.job.video_url):
            MEDIA.submit(("save", id(self), view.task_id), self._save_then_open, view, saver)
        else:
            self._players.open(view, on_finish=True)

    def _save_then_open(self, view: JobView, saver: ClipSaver) -> None:
        saver.save(view.job)
        self._players.open(view, on_finish=True)

    def _on_save_click(self, view: JobView) -> None:
        self._saver.save_later(view.job)

    def _on_cancel_click(self, view: JobView) -> None:
        """Withdraw a job waiting in a workshop gateway's queue (off the kernel thread)."""
        account_lane(self.client.base_url).submit(("cancel", view.task_id), self._cancel, view)

    def _cancel(self, view: JobView) -> None:
        try:
            task = self.client.cancel(view.task_id)
        except ApiframeError as exc:
            view.job.note_problem(f"not cancelled: {exc}")
            return
        view.job.apply(task)
        self.header.refresh_credits()

    def _use_as_input(self, view: JobView) -> None:
        url = view.job.video_url
        if is_http_url(url):
            self.form.use_video(str(url))

    def _show_counts(self) -> None:
        """The header's counts, read under the update lock (so never older than shown)."""
        ui_updates.apply(lambda: self.header.show_counts(
            job.snapshot().counted_as for job in self.job_list.jobs))

    # ----- public ---------------------------------------------------------------------------

    @property
    def download_dir(self) -> Path:
        """Where Save puts clips."""
        return self._saver.folder

    @property
    def jobs(self) -> list[Job]:
        """The jobs shown: running ones first, then newest first."""
        return self.job_list.jobs

    def show_as(self, mode: str) -> None:
        """``"gallery"``: clips side by side under their prompts; ``"list"``: compact rows."""
        self.job_list.mode.value = mode

    def play(self, job: Job | str) -> None:
        """Open a finished job's player (what a click on its row does)."""
        view = self.view(job)
        if view is not None:
            self._players.open(view)

    def view(self, job: Job | str) -> JobView | None:
        """The view of a job (or of a task_id) in this panel."""
        return self.job_list.view(job if isinstance(job, str) else job.task_id)

    @property
    def banner(self) -> str:
        """The banner's markup ("" when hidden)."""
        return self._banner.markup

    def show_banner(self, title: str, details: list[str] | None = None, *, warn: bool = False
                    ) -> None:
        """A message above the form."""
        self._banner.show(title, details, warn=warn)

    def hide_banner(self) -> None:
        self._banner.hide()

    def attach(self, task_id: str) -> Job:
        """Follow a task submitted elsewhere (another kernel, the CLI) and show it."""
        task_id = task_id.strip()
        view = self.job_list.view(task_id)
        if view is None:
            record = self.client.store.get(task_id)
            job = job_from_record(record) if record is not None else Job(task_id, checked=False)
            (view,) = self._show([job], live=True)
        elif view.job.state == RUNNING and task_id not in self._handles:
            self._follow(view)
        return view.job

    def refresh(self) -> None:
        """Poll every job and the credits now, and re-send what is shown from this thread.

        On Colab, widget updates made by the background poller do not reach the page;
        calling this (or the Refresh button) shows the current state.
        """
        self.tracker.refresh()
        for view in self.job_list.views:
            handle = self._handles.get(view.task_id)
            latest = handle.task if handle is not None else None
            if latest is not None:
                view.job.apply(latest)
            ui_updates.apply(view.send_state)
        self._show_counts()
        ui_updates.apply(self.header.counts.send_state)
        self.header.refresh_credits(wait=True)

    def close(self) -> None:
        """Stop following jobs and close every widget of the panel."""
        if getattr(self, "_closed", True):  # closed, or its construction failed
            return
        self._closed = True
        for handle in self._handles.values():
            handle.cancel()
        if self._own_tracker:
            self.tracker.stop()
        self._summary.close()
        self._media.close()
        self.job_list.close()
        close_tree(self)
        super().close()

    # ----- text -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        backend = f"DEMO {self.client.base_url}" if self.client.is_demo else self.client.base_url
        return panel_text(backend, self.jobs)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["text/plain"] = repr(self)
        return data

    def _ipython_display_(self, **kwargs: Any) -> None:
        """Two outputs: the live widget, then the static summary that outlives the kernel."""
        from IPython.display import display

        data = super()._repr_mimebundle_(**kwargs) or {}
        # Where the widget cannot show, the summary below says everything; an empty text
        # (which its style hides) keeps renderers from warning about an unshowable output.
        data["text/plain"] = ""
        display(data, raw=True)
        self._summary.view.show()


def panel_text(backend: str, jobs: list[Job]) -> str:
    """The panel as text (for frontends without widgets): counts, then up to 20 jobs."""
    states = [job.state for job in jobs]
    lines = [
        f"RunwayPanel(backend={backend}, {states.count('running')} running, "
        f"{states.count('finished')} finished, {states.count('failed')} failed)"
    ]
    lines += [f"  {job.describe()}" for job in jobs[:20]]
    return "\n".join(lines)
