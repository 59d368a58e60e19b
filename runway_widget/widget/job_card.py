"""One job in the panel: what was asked, live progress, then the player or the failure.

Every widget of a card is built in ``__init__``, on the thread that creates the card (the
kernel's main thread). The tracker's poller thread only calls `update` and `progress`, which
set values, visibility and children to those pre-built widgets; the video player gets its
bytes before it joins the visible children.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..models import GenerationRequest, Task, is_http_url
from . import html
from .code_snippet import requests_snippet
from .lifecycle import close_tree

PROMPT_LIMIT = 120
TYPE_NAMES = {"text2video": "Text → video", "image2video": "Image → video",
              "video2video": "Video → video"}
RUNNING_LABELS = {"submitted": "submitted", "staged": "queued", "starting": "starting",
                  "processing": "processing"}

Callback = Callable[["JobCard"], Any]


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def options_summary(payload: Mapping[str, Any]) -> str:
    """``Text → video · gen3a_turbo · 5 s · 16:9`` from a request payload."""
    parts = [TYPE_NAMES.get(str(payload.get("generation_type")),
                            str(payload.get("generation_type") or "?"))]
    for key in ("model", "duration", "aspect_ratio"):
        if payload.get(key) is not None:
            parts.append(f"{payload[key]} s" if key == "duration" else str(payload[key]))
    if payload.get("flip"):
        parts.append("flipped")
    if payload.get("end_image_url"):
        parts.append("with end image")
    if payload.get("webhook_url"):
        parts.append("webhook")
    return " · ".join(parts)


class JobCard(widgets.VBox):
    """A card for one task. Actions are callbacks supplied by the panel."""

    def __init__(
        self,
        task_id: str,
        request: GenerationRequest | Mapping[str, Any] | None,
        *,
        backend: str | None = None,
        submitted_at: float | None = None,
        local_path: str | None = None,
        on_done: Callback | None = None,
        on_change: Callback | None = None,
        on_save: Callback | None = None,
        on_retry: Callback | None = None,
        on_use: Callback | None = None,
        is_browser_reachable: Callable[[str], bool] = is_http_url,
    ) -> None:
        self.task_id = task_id
        self._is_browser_reachable = is_browser_reachable
        if isinstance(request, GenerationRequest):
            self.request: GenerationRequest | None = request
            payload = request.public_payload()
        else:
            payload = dict(request or {})
            payload.pop("webhook_secret", None)
            self.request = GenerationRequest.from_payload(payload) if payload else None
        self.payload = payload
        self.backend = backend
        self.submitted_at = submitted_at or time.time()
        self.local_path = local_path
        self.task: Task | None = None
        self._finished_at: float | None = None
        self._lock = threading.RLock()
        self._on_done = on_done
        self._on_change = on_change
        self._on_save = on_save
        self._on_retry = on_retry
        self._on_use = on_use

        prompt = str(payload.get("prompt") or "(prompt unknown: task attached by id)")
        when = time.strftime("%H:%M", time.localtime(self.submitted_at))
        summary = options_summary(payload) if payload else "options unknown"
        self._header = widgets.HTML(
            f'<div class="rw-prompt" title="{html.esc(prompt)}">'
            f"{html.esc(html.truncate(prompt, PROMPT_LIMIT))}</div>"
            f"<div>{html.span(summary, 'rw-muted')} "
            f"{html.span(f'· task {task_id} · {when}', 'rw-muted rw-mono')}</div>",
            layout=widgets.Layout(width="100%"),
        )
        self.bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=100.0, bar_style="info",
            layout=widgets.Layout(flex="1 1 auto", width="auto", min_width="120px"),
        )
        self.status = widgets.HTML(html.span("submitted", "rw-muted"))
        self._progress_row = widgets.HBox(
            [self.bar, self.status],
            layout=widgets.Layout(width="100%", align_items="center", grid_gap="10px"),
        )
        self.message = widgets.HTML(layout=widgets.Layout(display="none"))
        self.video = widgets.Video(
            format="mp4", controls=True, autoplay=False, loop=False,
            layout=widgets.Layout(width="auto", max_width="100%", max_height="420px"),
        )
        self._player_html = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.player = widgets.Box(children=(), layout=widgets.Layout(width="100%"))
        self.save_button = self._button("Save", "save", "Save the video into the download folder")
        self.link = widgets.HTML()
        self.code_button = widgets.ToggleButton(
            value=False, description="Show code", icon="code",
            tooltip="The same job as a Python requests call",
            layout=widgets.Layout(width="auto"),
        )
        self.use_button = self._button("Use as input", "arrow-up",
                                       "Restyle this video: fills the form as video → video")
        self.retry_button = self._button("Try again", "redo", "Submit the same request again")
        self.retry_button.button_style = "warning"
        for button in (self.save_button, self.use_button, self.retry_button):
            button.layout.display = "none"
        self.code = widgets.HTML(layout=widgets.Layout(display="none", width="100%"))
        self._actions = widgets.HBox(
            [self.save_button, self.use_button, self.retry_button, self.code_button, self.link],
            layout=widgets.Layout(width="100%", align_items="center", flex_flow="row wrap",
                                  grid_gap="6px"),
        )
        self.save_button.on_click(lambda _: self._on_save and self._on_save(self))
        self.use_button.on_click(lambda _: self._on_use and self._on_use(self))
        self.retry_button.on_click(lambda _: self._on_retry and self._on_retry(self))
        self.code_button.observe(self._toggle_code, names="value")

        super().__init__(
            children=[self._header, self._progress_row, self.message,
                      self.player, self._actions, self.code],
            layout=widgets.Layout(width="100%", padding="8px 12px", margin="0 0 8px 0",
                                  grid_gap="4px"),
        )
        self.add_class("rw-card")

    @staticmethod
    def _button(text: str, icon: str, tooltip: str) -> widgets.Button:
        return widgets.Button(description=text, icon=icon, tooltip=tooltip,
                              layout=widgets.Layout(width="auto"))

    # ----- state ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``running``, ``finished`` or ``failed``."""
        task = self.task
        if task is None or not task.is_done:
            return "running"
        return "finished" if task.is_finished else "failed"

    @property
    def prompt(self) -> str:
        return str(self.payload.get("prompt") or "")

    def update(self, task: Task, *, when: float | None = None) -> None:
        """Show a new task state (any thread). Never leaves a terminal state; the bar never
        moves back. ``when``: the time of this state, if not now (a job from the history)."""
        with self._lock:
            old = self.task
            if old is not None and (old.is_done or task.same_progress(old)):
                return
            self.task = task
            if task.is_done:
                self._finished_at = when or time.time()
                self._show_done(task)
            else:
                self._show_running(task, task.percentage)
        if self._on_change:
            self._on_change(self)
        if task.is_done and self._on_done:
            self._on_done(self)

    def progress(self, percentage: float) -> None:
        """An interpolated percentage between polls (any thread): the bar keeps moving."""
        with self._lock:
            task = self.task
            if task is not None and task.is_done:
                return
            self._show_running(task, percentage)

    def _show_running(self, task: Task | None, percentage: float | None) -> None:
        status = task.status if task is not None else "submitted"
        label = RUNNING_LABELS.get(status, status)
        if percentage is not None:
            self.bar.value = max(self.bar.value, min(100.0, float(percentage)))
        elapsed = _clock(time.time() - self.submitted_at)
        pct = f" · {self.bar.value:.0f}%" if self.bar.value or percentage is not None else ""
        self.status.value = html.span(f"{label}{pct} · {elapsed}", "rw-muted")

    def _show_done(self, task: Task) -> None:
        took = _clock((self._finished_at or time.time()) - self.submitted_at)
        if task.is_finished:
            self.bar.value = 100.0
            self.bar.bar_style = "success"
            self.status.value = html.span(f"finished · {took}", "rw-ok")
            if task.video_url:
                self.link.value = self._video_link()
                self.save_button.layout.display = "flex" if is_http_url(task.video_url) else "none"
                self.use_button.layout.display = "flex" if is_http_url(task.video_url) else "none"
            self.show_note(html.span("loading the video…", "rw-muted"))
        else:
            self.bar.bar_style = "danger"
            self.status.value = html.span(f"failed · {took}", "rw-error")
            reason = task.message or "the service gave no reason"
            self.message.value = (
                f'<div class="rw-error"><b>Failed:</b> {html.esc(reason)}</div>'
            )
            self.message.layout.display = "block"
            if self.request is not None:
                self.retry_button.layout.display = "flex"

    def mark_error(self, why: str) -> None:
        """Show a problem with following this task (kept below the bar)."""
        self.message.value = html.span(why, "rw-error")
        self.message.layout.display = "block"

    # ----- player ---------------------------------------------------------------------------

    def show_video_bytes(self, data: bytes) -> None:
        """Play from bytes sent through the widget (local files, demo backend)."""
        self.player.children = ()
        self.video.value = data
        self.player.children = (self.video,)

    def show_video_url(self, url: str) -> None:
        """Play from a remote http(s) URL in the browser."""
        self._player_html.value = html.video_tag(url)
        self.player.children = (self._player_html,)
        self.video.value = b""

    def show_note(self, markup: str) -> None:
        """Put a (pre-escaped) note where the player goes."""
        self._player_html.value = markup
        self.player.children = (self._player_html,)
        self.video.value = b""

    def set_saved(self, path: str | Path) -> None:
        """Record where the video was saved and say so."""
        self.local_path = str(path)
        self.save_button.description = "Saved"
        self.save_button.icon = "check"
        self.save_button.tooltip = f"Saved to {path}"
        saved = html.span(f"saved to {path}", "rw-muted rw-mono")
        self.link.value = self._video_link(" · ") + saved

    def set_save_error(self, why: str) -> None:
        self.link.value = self._video_link(" · ") + html.span(f"not saved: {why}", "rw-error")

    def _video_link(self, separator: str = "") -> str:
        """A link to the video, only where the browser can open it (not the kernel's loopback)."""
        url = self.task.video_url if self.task else None
        if not url or not self._is_browser_reachable(url):
            return ""
        return html.link(url, "open video ↗") + separator

    # ----- code -----------------------------------------------------------------------------

    def code_text(self) -> str:
        """The equivalent ``requests`` call (the key and secret as environment lookups)."""
        has_secret = self.request is not None and bool(self.request.webhook_secret)
        return requests_snippet(self.payload, self.backend, has_secret=has_secret)

    def _toggle_code(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.code.value = html.code_block(self.code_text())
            self.code.layout.display = "block"
            self.code_button.description = "Hide code"
        else:
            self.code.layout.display = "none"
            self.code.value = ""
            self.code_button.description = "Show code"

    def close(self) -> None:
        """Close the card and the players that may not be among its children."""
        close_tree(self, (self.video, self._player_html, self.code))
        super().close()

    # ----- frontends -------------------------------------------------------------------------

    def sync(self) -> None:
        """Re-send the changing parts of the card from the calling thread (Colab)."""
        for widget in (self.bar, self.status, self.message, self.player, self.link,
                       self._player_html, self.save_button, self.use_button, self.retry_button):
            widget.send_state()

    def describe(self) -> str:
        """One line of text for frontends without widgets."""
        task = self.task
        if task is None:
            where = "submitted"
        elif task.is_finished:
            where = f"finished, {self.local_path or task.video_url or 'no video URL'}"
        elif task.is_failed:
            where = f"failed: {task.message or 'no reason given'}"
        else:
            pct = f" {self.bar.value:.0f}%" if self.bar.value else ""
            where = f"{task.status}{pct}"
        return f"[{self.task_id}] {html.truncate(self.prompt or '?', 60)!r}: {where}"

    def __repr__(self) -> str:
        return f"JobCard({self.describe()})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["text/plain"] = repr(self)
        return data
