"""The form's Upload buttons: a local image goes to the service and its URL fills the field.

The file's bytes are taken out of the ``FileUpload`` widget at once (they must not stay in the
widget state, nor in a saved notebook), and "uploading …" shows on the field's line at once;
the call to the service runs in a background lane, and its outcome comes back through
`ui_updates`. Only the newest upload of a field fills it, and only if nobody typed into the
field meanwhile: a stale upload never overwrites a newer value.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable
from typing import Any

import ipywidgets as widgets

from ..errors import ApiframeError
from . import ui_updates
from .background import Lane
from .problems import FieldProblems
from .shared_models import SharedModels, set_shown

logger = logging.getLogger("runway_widget.widget")


def upload_button(shared: SharedModels, enabled: bool) -> widgets.FileUpload:
    """An Upload button for one image field (hidden when there is nowhere to upload to)."""
    button = widgets.FileUpload(
        accept="image/*", multiple=False, description="Upload",
        tooltip="Upload a local image (max 2 MB); its URL fills the field",
        layout=shared.layout, style=shared.button)
    set_shown(button, enabled)
    return button


class FieldUploads:
    """The uploads into one field: its button, the field, its problem line and its lane."""

    def __init__(self, button: widgets.FileUpload, target: widgets.Text, name: str,
                 upload: Callable[[bytes], str] | None, problems: FieldProblems,
                 lane: Lane) -> None:
        self._button = button
        self._target = target
        self._name = name
        self._upload = upload
        self._problems = problems
        self._lane = lane
        # The newest upload (its key) and the field's value when it started; None: none runs.
        self._newest: tuple[Hashable, str] | None = None
        button.observe(self._on_files, names="value")

    def _on_files(self, change: dict[str, Any]) -> None:
        """On the kernel thread: take the bytes, say "uploading …", queue the call."""
        files = change["new"]
        if not files:
            return
        first = files[0]
        content = first.get("content", b"")
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        self._button.value = ()  # the file's bytes must not stay in the widget state
        if self._upload is None:
            return
        key = ("upload", id(self), hashlib.sha256(data).hexdigest())  # the same file: once
        label = first.get("name") or "image"

        def start() -> None:
            self._newest = (key, self._target.value)
            self._problems.set_line(self._name, f"uploading {label}…", muted=True)

        ui_updates.apply(start)
        self._lane.submit(key, self._send, key, self._upload, data, dropped=lambda: self._settle(
            key, None, "upload failed: the panel is busy; try again"))

    def _send(self, key: Hashable, upload: Callable[[bytes], str], data: bytes) -> None:
        """In the lane: upload, then fill the field (or say why not)."""
        try:
            url = upload(data)
        except ApiframeError as exc:
            self._settle(key, None, f"upload failed: {exc}")
        except Exception as exc:  # a failed upload must never raise into the frontend
            logger.warning("image upload failed: %s", type(exc).__name__)
            self._settle(key, None, f"upload failed: {type(exc).__name__}")
        else:
            self._settle(key, url, None)

    def _settle(self, key: Hashable, url: str | None, failure: str | None) -> None:
        """Show an upload's outcome, if it is still the newest one of the field."""

        def update() -> None:
            if self._newest is None or self._newest[0] != key:
                return  # a newer upload owns the field's line
            typed_over = self._target.value != self._newest[1]
            self._newest = None
            self._problems.set_line(self._name, failure)
            if url is not None and not typed_over:
                self._target.value = url

        ui_updates.apply(update)
