"""How one job looks in the panel: one widget model with its own script and style.

A finished job is a compact row (a thumbnail when there is a poster, the prompt, the status);
one click opens its player, and closing the player drops the clip's bytes, so a saved notebook
carries only the clips left open. A running job shows its bar. In the panel's gallery the same
view is a tile, so clips play side by side under their prompts.

The view is built on the kernel thread. It renders its `Job` whenever the job changes, from
whichever thread changed it, through `ui_updates.apply`; it never builds widgets afterwards.
Everything it shows is text set with ``textContent`` by its script; only http(s) URLs reach
a ``src`` or ``href`` (checked here and again in the script).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anywidget
import traitlets

from ..models import is_http_url, video_filename, waiting_label
from . import ui_updates
from .code_snippet import requests_snippet
from .html import STATIC
from .job import FAILED, FINISHED, Job, JobState

TYPE_NAMES = {"text2video": "Text → video", "image2video": "Image → video",
              "video2video": "Video → video"}
RUNNING_LABELS = {"submitted": "submitted", "staged": "queued", "starting": "starting",
                  "processing": "processing"}

Action = Callable[["JobView"], object]


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration."""
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


def status_label(job: Job, state: JobState, now: float | None = None) -> str:
    """``processing · 40% · 0:12``, ``queued · 3rd in line · 0:04`` (in a workshop
    gateway's queue), ``finished · 0:35`` or ``failed · 0:20``."""
    task = state.task
    if task is not None and task.is_done:
        took = clock((state.finished_at or time.time()) - job.submitted_at)
        return f"{task.status} · {took}"
    status = task.status if task is not None else "submitted"
    label = (waiting_label(task) if task is not None else None) or RUNNING_LABELS.get(
        status, status
    )
    pct = f" · {state.progress:.0f}%" if state.progress else ""
    return f"{label}{pct} · {clock((now or time.time()) - job.submitted_at)}"


class JobView(anywidget.AnyWidget):
    """One job: a row (or a gallery tile) that opens into a player with actions."""

    _esm = STATIC / "job_view.js"  # its style comes once with the panel (html.STYLE)

    task_id = traitlets.Unicode("").tag(sync=True)
    prompt = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("running").tag(sync=True)
    label = traitlets.Unicode("submitted").tag(sync=True)
    progress = traitlets.Float(0.0).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    opened = traitlets.Bool(False).tag(sync=True)
    video = traitlets.Bytes(b"").tag(sync=True)
    video_src = traitlets.Unicode("").tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)
    note_is_error = traitlets.Bool(False).tag(sync=True)
    poster = traitlets.Bytes(b"").tag(sync=True)
    link = traitlets.Unicode("").tag(sync=True)
    saved = traitlets.Unicode("").tag(sync=True)
    save_error = traitlets.Unicode("").tag(sync=True)
    actions = traitlets.List(traitlets.Unicode()).tag(sync=True)
    code = traitlets.Unicode("").tag(sync=True)
    dashboard = traitlets.Bool(False).tag(sync=True)
    filename = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        job: Job,
        *,
        on_action: Mapping[str, Action] | None = None,
        is_browser_reachable: Callable[[str], bool] = is_http_url,
        dashboard: bool = False,
    ) -> None:
        when = time.strftime("%H:%M", time.localtime(job.submitted_at))
        summary = options_summary(job.payload) if job.payload else "options unknown"
        super().__init__(
            task_id=job.task_id,
            prompt=job.prompt or "(prompt unknown: task attached by id)",
            summary=f"{summary} · task {job.task_id} · {when}",
            dashboard=dashboard,
            filename=video_filename(job.prompt, job.task_id),
        )
        self.add_class("rw-job-item")
        self.job = job
        self._on_action = dict(on_action or {})
        self._is_browser_reachable = is_browser_reachable
        self.on_msg(self._on_message)
        self._render()
        self._unsubscribe = job.subscribe(lambda _job: self._render())

    # ----- rendering (any thread, through the one path) --------------------------------------

    def _render(self) -> None:
        """Show the job's latest state. The snapshot is taken under the update lock, so two
        threads rendering at once cannot leave the older state on the page."""
        ui_updates.apply(lambda: ui_updates.set_values(self, **self._values(self.job.snapshot())))

    def _values(self, state: JobState) -> dict[str, Any]:
        job = self.job
        task = state.task
        url = task.video_url if task is not None else None
        reachable = is_http_url(url) and self._is_browser_reachable(str(url))
        actions = []
        if task is not None and waiting_label(task) is not None:
            actions.append("cancel")
        if state.status == FINISHED and is_http_url(url):
            actions += ["save", "use"]
        if state.status == FAILED and job.request is not None:
            actions.append("retry")
        actions.append("code")
        message = ""
        if state.status == FAILED:
            message = f"Failed: {(task.message if task else None) or 'the service gave no reason'}"
        elif state.problem:
            message = state.problem
        saved = ""
        if state.saving:
            saved = "saving…"
        elif state.local_path and state.status == FINISHED:
            saved = f"saved to {state.local_path}"
        return {
            "status": state.status,
            "label": status_label(job, state),
            "progress": round(state.progress, 1),
            "message": message,
            "link": str(url) if reachable else "",
            "saved": saved,
            "save_error": f"not saved: {state.save_error}" if state.save_error else "",
            "actions": actions,
        }

    def show_video_bytes(self, data: bytes) -> None:
        """Play from bytes sent through the widget (local files, the demo backend)."""
        ui_updates.set_values(self, video=data, video_src="", note="", note_is_error=False,
                              opened=True)

    def show_video_url(self, url: str) -> None:
        """Play from a remote http(s) URL in the browser."""
        if not is_http_url(url):
            self.show_note(f"no playable video URL: {url[:80]}", error=True)
            return
        ui_updates.set_values(self, video=b"", video_src=url, note="", note_is_error=False,
                              opened=True)

    def show_note(self, text: str, *, error: bool = False) -> None:
        """A line of text where the player goes."""
        ui_updates.set_values(self, video=b"", video_src="", note=text, note_is_error=error,
                              opened=True)

    def close_player(self) -> None:
        """Collapse to the row and drop the clip's bytes."""
        ui_updates.set_values(self, opened=False, video=b"", video_src="", note="",
                              note_is_error=False)

    def set_poster(self, data: bytes) -> None:
        """A small still of the clip (JPEG or PNG bytes) for the row and the gallery tile."""
        ui_updates.set_values(self, poster=data)

    # ----- actions (kernel thread: a click, or code) --------------------------------------------

    def act(self, name: str) -> None:
        """Do what the button ``name`` does: open, close, save, use, retry, cancel, code."""
        if name == "code":
            self.toggle_code()
        else:
            self._act(name)

    def toggle_code(self) -> None:
        """Show (or hide) the same job as a Python ``requests`` call."""
        text = "" if self.code else self.code_text()
        ui_updates.set_values(self, code=text)

    def code_text(self) -> str:
        """The equivalent ``requests`` call (the key and secret as environment lookups)."""
        return requests_snippet(self.job.payload, self.job.backend, has_secret=self.job.has_secret)

    def _act(self, name: str) -> None:
        action = self._on_action.get(name)
        if action is not None:
            action(self)

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and isinstance(content.get("action"), str):
            self.act(content["action"])

    def close(self) -> None:
        """Stop rendering the job and close the view with its layout."""
        self._unsubscribe()
        self.layout.close()
        super().close()

    # ----- text -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"JobView({self.job.describe()})"
