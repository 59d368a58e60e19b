"""`RunwayPanel`: the form, the job cards and the header, wired to a client and a tracker.

Threads: the panel and every card are built on the kernel's main thread (construction, a
click, `attach`). The tracker's poller thread only calls `JobCard.update`/`progress`; slower
follow-up work for a finished job (reading the video bytes, auto-download) runs on a small
worker pool so the poller never waits on it. Neither creates widgets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import ipywidgets as widgets

from ..errors import (
    ApiframeError,
    AuthenticationError,
    NetworkError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    ValidationError,
)
from ..models import GenerationRequest, Problem, Task, is_http_url, video_filename
from . import html
from .form import GenerationForm
from .job_card import JobCard
from .lifecycle import close_tree
from .media import VIDEO_LIMIT, MediaSource, MediaTooLarge, MediaUnavailable

if TYPE_CHECKING:
    from ..client import ApiframeClient
    from ..store import JobRecord
    from ..tracker import TaskTracker, TrackHandle
    from ..webhooks import WebhookReceiver

log = logging.getLogger("runway_widget.widget")

VISIBLE_HISTORY = 5
EARLIER_LIMIT = 50
# A second Generate click that reaches the kernel this soon after an identical submit was
# queued behind the first one (the button was not yet disabled in the browser): ignore it.
REPEAT_CLICK_WINDOW = 1.0


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    """One small pool for every panel's slow follow-up work (video bytes, downloads).

    Shared, so a panel that is never closed (a re-run cell) pins no threads of its own.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runway-widget-media")
        return _pool


def _default_client() -> ApiframeClient:
    from ..client import ApiframeClient

    client = ApiframeClient()  # a key from the environment, a hub or `runway-widget join`
    if client.api_key:
        return client
    return ApiframeClient.demo()


class RunwayPanel(widgets.VBox):
    """Generate Runway videos from a notebook: form, live job cards, inline players.

    ``client``: an `ApiframeClient`; by default one from ``APIFRAME_API_KEY``, or the shared
    demo backend when no key is set (the header then shows a DEMO badge).
    ``tracker``: a `TaskTracker` to follow jobs with (default: a new one, stopped by `close`).
    ``auto_download``: save every finished video into ``download_dir``.
    ``webhooks``: a started `WebhookReceiver`; the form offers "receive updates here".
    """

    def __init__(
        self,
        client: ApiframeClient | None = None,
        tracker: TaskTracker | None = None,
        auto_download: bool = False,
        *,
        download_dir: str | os.PathLike[str] = "runway_videos",
        webhooks: WebhookReceiver | None = None,
    ) -> None:
        from ..tracker import TaskTracker

        self.client = client if client is not None else _default_client()
        self._own_tracker = tracker is None
        self.tracker = tracker if tracker is not None else TaskTracker(
            self.client, webhooks=webhooks
        )
        self.auto_download = auto_download
        self.download_dir = Path(download_dir)
        self.webhooks = webhooks
        self._media = MediaSource(self.client.is_own_backend)
        self._submit_lock = threading.Lock()
        self._last_sent: tuple[float, dict[str, Any]] | None = None
        self._cards: list[JobCard] = []
        self._handles: dict[str, TrackHandle] = {}
        self._earlier: list[JobRecord] = []
        self._closed = False

        self.form = GenerationForm(
            media=self._media, upload=self.client.upload_image, webhooks=webhooks
        )
        self.form.on_submit(self._on_generate_click)
        header = self._build_header()
        self._banner = widgets.HTML(layout=widgets.Layout(width="100%"))
        self._banner_close = widgets.Button(
            icon="times", tooltip="Dismiss", layout=widgets.Layout(width="32px")
        )
        self._banner_close.on_click(lambda _: self.hide_banner())
        self._banner_row = widgets.HBox(
            [self._banner, self._banner_close],
            layout=widgets.Layout(display="none", width="100%", align_items="flex-start"),
        )
        self._jobs_title = widgets.HTML(html.span("Jobs", "rw-title"))
        self._job_list = widgets.VBox(layout=widgets.Layout(width="100%"))
        self._earlier_toggle = widgets.ToggleButton(
            value=False, icon="history", layout=widgets.Layout(width="auto", display="none")
        )
        self._earlier_toggle.observe(self._toggle_earlier, names="value")
        self._earlier_list = widgets.VBox(layout=widgets.Layout(width="100%", display="none"))
        self._history_note = widgets.HTML()
        jobs = widgets.VBox(
            [self._jobs_title, self._job_list, self._earlier_toggle, self._earlier_list,
             self._history_note],
            layout=widgets.Layout(width="100%", margin="8px 0 0 0"),
        )
        jobs.add_class("rw-section")
        super().__init__(
            children=[header, self._banner_row, self.form, jobs],
            layout=widgets.Layout(width="100%", max_width="900px", padding="4px",
                                  grid_gap="6px"),
        )
        self.add_class("rw-panel")
        self._resume()
        self._update_counts()
        self.refresh_credits(wait=False)

    # ----- header ---------------------------------------------------------------------------

    def _build_header(self) -> widgets.Widget:
        if self.client.is_demo:
            badge = (
                '<span class="rw-badge rw-badge-demo" title="A local demo backend: '
                'no API key, no credits, generated test clips">DEMO</span> '
                + html.span(
                    "local demo backend, no key needed",
                    "rw-muted rw-demo-address",
                    title=f"Serving at {self.client.base_url} in the kernel",
                )
            )
        else:
            host = urlsplit(self.client.base_url).netloc or self.client.base_url
            badge = html.span(host, "rw-badge rw-badge-live", title=self.client.base_url)
        self._title = widgets.HTML(
            html.STYLE + html.span("Runway video", "rw-title") + " " + badge
        )
        self._credits = widgets.HTML(html.span("credits: …", "rw-muted"))
        self._counts = widgets.HTML()
        self._refresh_button = widgets.Button(
            description="Refresh", icon="refresh",
            tooltip="Poll every job and the credits now (use this on Colab)",
            layout=widgets.Layout(width="auto"),
        )
        self._refresh_button.on_click(lambda _: self.refresh())
        right = widgets.HBox(
            [self._credits, self._counts, self._refresh_button],
            layout=widgets.Layout(align_items="center", grid_gap="12px"),
        )
        return widgets.HBox(
            [self._title, right],
            layout=widgets.Layout(width="100%", align_items="center", flex_flow="row wrap",
                                  justify_content="space-between"),
        )

    def refresh_credits(self, *, wait: bool = True) -> None:
        """Ask the account for its credits; errors are shown in place of the number."""
        if wait:
            self._load_credits()
        else:
            self._run_later(self._load_credits)

    def _load_credits(self) -> None:
        try:
            info = self.client.account()
        except ApiframeError as exc:
            self._credits.value = html.span(f"credits unavailable: {exc}", "rw-error")
            return
        credits = info.get("credits")
        text = f"{credits:,} credits" if isinstance(credits, int) else f"credits: {credits}"
        plan = info.get("plan")
        self._credits.value = html.span(text, "rw-badge", title=f"plan: {plan}" if plan else None)

    def _update_counts(self, _card: JobCard | None = None) -> None:
        states = [card.state for card in self._cards]
        parts = [f"{states.count('running')} running", f"{states.count('finished')} finished"]
        if states.count("failed"):
            parts.append(f"{states.count('failed')} failed")
        self._counts.value = html.span(" · ".join(parts), "rw-muted")

    # ----- banner ---------------------------------------------------------------------------

    def show_banner(self, title: str, details: list[str] | None = None, *, warn: bool = False
                    ) -> None:
        """A message above the form (submit errors)."""
        self._banner.value = html.banner(title, details, warn=warn)
        self._banner_row.layout.display = "flex"

    def hide_banner(self) -> None:
        self._banner.value = ""
        self._banner_row.layout.display = "none"

    @property
    def banner(self) -> str:
        """The banner's markup ("" when hidden)."""
        return self._banner.value

    # ----- submitting -----------------------------------------------------------------------

    def _on_generate_click(self) -> None:
        payload = self.form.request().public_payload()
        last = self._last_sent
        if last is not None and time.monotonic() - last[0] < REPEAT_CLICK_WINDOW \
                and last[1] == payload:
            log.info("ignored a repeated Generate click")
            return
        self.submit()

    def submit(self) -> JobCard | None:
        """What Generate does: validate, send, add a card. None when nothing was sent.

        Returns at once with None while another submit is in flight.
        """
        if not self._submit_lock.acquire(blocking=False):
            return None
        try:
            card = self._submit(self.form.request())
            if card is not None:
                self.form.forget_secret()
            return card
        finally:
            self._submit_lock.release()

    def _retry(self, card: JobCard) -> None:
        if card.request is None or not self._submit_lock.acquire(blocking=False):
            return
        try:
            self._submit(card.request)
        finally:
            self._submit_lock.release()

    def _submit(self, request: GenerationRequest) -> JobCard | None:
        self.hide_banner()
        problems = request.problems()
        if problems:
            self.form.show_problems(problems)
            return None
        self.form.clear_problems()
        self.form.set_busy(True)
        try:
            task_id = self.client.imagine(request)
        except ValidationError as exc:
            self.form.show_problems(
                [Problem(f, m) for f, m in zip(exc.fields, exc.problems, strict=False)]
            )
            self.show_banner("The service rejected the request", exc.problems)
            return None
        except SubmissionUnknownError as exc:
            self.show_banner(
                "The request was sent but no answer came back",
                [
                    str(exc),
                    "The job may or may not exist (and may be charged). Check your job history "
                    "(`runway-widget history`, or the APIFRAME dashboard) before resubmitting.",
                ],
                warn=True,
            )
            return None
        except AuthenticationError as exc:
            self.show_banner("The API key was refused or is missing", [str(exc)])
            return None
        except RateLimitError as exc:
            wait = f" (retry in about {exc.retry_after:.0f} s)" if exc.retry_after else ""
            self.show_banner("Too many requests: nothing was sent", [f"{exc}{wait}"], warn=True)
            return None
        except NetworkError as exc:
            self.show_banner("Could not reach the service: nothing was sent", [str(exc)])
            return None
        except ServerError as exc:
            self.show_banner("The service had an error", [str(exc)])
            return None
        except ApiframeError as exc:
            self.show_banner("Submitting failed", [str(exc)])
            return None
        except Exception as exc:  # a click handler's traceback would be invisible
            log.exception("submit failed")
            self.show_banner("Submitting failed unexpectedly", [f"{type(exc).__name__}: {exc}"])
            return None
        finally:
            self.form.set_busy(False)
        self._last_sent = (time.monotonic(), request.public_payload())
        card = self._new_card(task_id, request, time.time())
        self._cards.insert(0, card)
        self._job_list.children = (card, *self._job_list.children)
        self._track(card)
        self._update_counts()
        self.refresh_credits(wait=False)
        return card

    # ----- cards ----------------------------------------------------------------------------

    def _new_card(
        self,
        task_id: str,
        request: GenerationRequest | dict[str, Any] | None,
        submitted_at: float | None,
        local_path: str | None = None,
    ) -> JobCard:
        return JobCard(
            task_id,
            request,
            backend=self.client.base_url,
            submitted_at=submitted_at,
            local_path=local_path,
            on_done=self._on_done,
            on_change=self._update_counts,
            on_save=self._on_save_click,
            is_browser_reachable=lambda url: not self._media.is_local(url),
            on_retry=self._retry,
            on_use=self._use_as_input,
        )

    def _track(self, card: JobCard) -> None:
        try:
            handle = self.tracker.track(
                card.task_id, on_update=card.update, on_progress=card.progress
            )
        except ApiframeError as exc:
            card.mark_error(f"not followed: {exc}")
            return
        self._handles[card.task_id] = handle

    def _on_done(self, card: JobCard) -> None:
        self._run_later(self._finish, card)

    def _run_later(self, fn: Any, *args: Any) -> None:
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
            _worker_pool().submit(self._guarded, fn, *args)

    @staticmethod
    def _guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("panel background work failed")

    def _finish(self, card: JobCard) -> None:
        """After a job finished: auto-save if asked, then put the video in the player."""
        task = card.task
        if task is None or not task.is_finished:
            return
        path = card.local_path if card.local_path and Path(card.local_path).is_file() else None
        if path is None and self.auto_download and is_http_url(task.video_url):
            saved = self._save(card)
            path = str(saved) if saved else None
        self._load_player(card, task, path)

    def _load_player(self, card: JobCard, task: Task, path: str | None) -> None:
        url = task.video_url
        if path is not None:
            try:
                card.show_video_bytes(self._media.read_file(path, VIDEO_LIMIT))
                return
            except MediaTooLarge as exc:
                if is_http_url(url) and not self._media.is_local(url):
                    card.show_video_url(url)
                    return
                card.show_note(html.span(
                    f"The video is too large to show here ({exc}); it is saved at {path}",
                    "rw-muted"))
                return
            except MediaUnavailable:
                pass
        if self._media.is_local(url):
            try:
                card.show_video_bytes(self._media.read_url(url, VIDEO_LIMIT))
            except MediaTooLarge as exc:
                card.show_note(html.span(
                    f"The video is too large to show here ({exc}): save it and open the "
                    "file, or open the link if this browser can reach the kernel's machine.",
                    "rw-muted"))
            except MediaUnavailable as exc:
                card.show_note(html.span(
                    f"The video is no longer available from {url} ({exc}).", "rw-error"))
        elif is_http_url(url):
            card.show_video_url(url)
        else:
            card.show_note(html.span(f"no playable video URL: {url}", "rw-error"))

    def _save(self, card: JobCard) -> Path | None:
        """Download the video into ``download_dir`` and journal where it went."""
        task = card.task
        if task is None or not is_http_url(task.video_url):
            return None
        target = self.download_dir / video_filename(card.prompt, card.task_id)
        try:
            if target.is_file():
                self.client.store.record_download(card.task_id, target)
            else:  # download() journals the saved path itself
                target = Path(self.client.download(task, target))
        except (ApiframeError, OSError) as exc:
            card.set_save_error(str(exc))
            return None
        card.set_saved(target)
        return target

    def _on_save_click(self, card: JobCard) -> None:
        self._run_later(self._save, card)  # a download must not hold up the kernel

    def _use_as_input(self, card: JobCard) -> None:
        if card.task is not None and is_http_url(card.task.video_url):
            self.form.use_video(card.task.video_url)

    # ----- history --------------------------------------------------------------------------

    def _resume(self) -> None:
        """Show the journal's jobs of this backend; follow the unfinished ones again."""
        try:
            history = self.client.store.load()
        except Exception as exc:
            log.warning("could not read the job history: %s", exc)
            self._history_note.value = html.span(f"job history unreadable: {exc}", "rw-error")
            return
        mine = [r for r in history.jobs if r.backend == self.client.base_url]
        head = mine[:VISIBLE_HISTORY]
        rest = mine[VISIBLE_HISTORY:]
        shown = head + [r for r in rest if not r.is_done]
        self._earlier = [r for r in rest if r.is_done]
        cards = [self._card_for(record) for record in shown]
        self._cards.extend(cards)
        self._job_list.children = tuple(cards)
        for card, record in zip(cards, shown, strict=True):
            self._restore(card, record)
        if self._earlier:
            n = len(self._earlier)
            self._earlier_toggle.description = f"Show {n} earlier job{'s' if n != 1 else ''}"
            self._earlier_toggle.layout.display = "flex"
        notes = []
        others = len(history.jobs) - len(mine)
        if others:
            notes.append(f"{others} job{'s' if others != 1 else ''} from other backends "
                         "(or earlier demo servers) not shown: `runway-widget history --all`")
        if history.skipped:
            notes.append(f"{len(history.skipped)} unreadable line(s) in {self.client.store.path}")
        self._history_note.value = html.span(" · ".join(notes), "rw-muted") if notes else ""

    def _card_for(self, record: JobRecord) -> JobCard:
        return self._new_card(record.task_id, record.request, record.submitted_at,
                              local_path=record.local_path)

    def _restore(self, card: JobCard, record: JobRecord) -> None:
        if record.status != "submitted":
            card.update(Task(record.task_id, record.status, record.percentage,
                             record.video_url, record.message),
                        when=record.updated_at or None)
        if not record.is_done:
            self._track(card)

    def _toggle_earlier(self, change: dict[str, Any]) -> None:
        n = len(self._earlier)
        if change["new"]:
            if not self._earlier_list.children:
                shown = self._earlier[:EARLIER_LIMIT]
                cards = [self._card_for(record) for record in shown]
                self._earlier_list.children = tuple(cards)
                self._cards.extend(cards)
                for card, record in zip(cards, shown, strict=True):
                    self._restore(card, record)
                if n > EARLIER_LIMIT:
                    self._history_note.value = html.span(
                        f"{n - EARLIER_LIMIT} older jobs not shown: `runway-widget history`",
                        "rw-muted")
            self._earlier_list.layout.display = "flex"
            self._earlier_toggle.description = f"Hide {n} earlier job{'s' if n != 1 else ''}"
        else:
            self._earlier_list.layout.display = "none"
            self._earlier_toggle.description = f"Show {n} earlier job{'s' if n != 1 else ''}"

    # ----- public ---------------------------------------------------------------------------

    @property
    def jobs(self) -> list[JobCard]:
        """The job cards shown, newest first (earlier jobs once expanded)."""
        return list(self._cards)

    def attach(self, task_id: str) -> JobCard:
        """Follow a task submitted elsewhere (another kernel, the CLI) and show its card."""
        task_id = task_id.strip()
        for card in self._cards:
            if card.task_id == task_id:
                if task_id not in self._handles and card.state == "running":
                    self._track(card)
                return card
        record = self.client.store.get(task_id)
        if record is not None:
            card = self._card_for(record)
        else:
            card = self._new_card(task_id, None, time.time())
        self._cards.insert(0, card)
        self._job_list.children = (card, *self._job_list.children)
        if record is not None:
            self._restore(card, record)
        if task_id not in self._handles and card.state == "running":
            self._track(card)
        self._update_counts()
        return card

    def refresh(self) -> None:
        """Poll every job and the credits now, and re-send what is shown from this thread.

        On Colab, widget updates made by the background poller do not reach the page;
        calling this (or the Refresh button) shows the current state.
        """
        self.tracker.refresh()
        for card in list(self._cards):
            handle = self._handles.get(card.task_id)
            latest = handle.task if handle is not None else None
            if latest is not None:
                card.update(latest)
            card.sync()
        self._update_counts()
        self._counts.send_state()
        self.refresh_credits()

    def close(self) -> None:
        """Stop following jobs, stop the worker threads and close every widget of the panel."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles.values():
            handle.cancel()
        if self._own_tracker:
            self.tracker.stop()
        self._media.close()
        close_tree(self)
        super().close()

    # ----- text -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        backend = f"DEMO {self.client.base_url}" if self.client.is_demo else self.client.base_url
        states = [card.state for card in self._cards]
        lines = [
            f"RunwayPanel(backend={backend}, {states.count('running')} running, "
            f"{states.count('finished')} finished, {states.count('failed')} failed)"
        ]
        lines += [f"  {card.describe()}" for card in self._cards[:20]]
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["text/plain"] = repr(self)
        return data

