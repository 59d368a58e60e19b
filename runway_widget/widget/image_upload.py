"""The form's Upload buttons: a local image goes to the service and its URL fills the field.

The file's bytes are taken out of the ``FileUpload`` widget at once (they must not stay in the
widget state, nor in a saved notebook); progress and failures show on the field's line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..errors import ApiframeError
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


def connect_upload(button: widgets.FileUpload, target: widgets.Text, name: str,
                   upload: Callable[[bytes], str] | None, problems: FieldProblems) -> None:
    """When a file arrives in ``button``: upload it and put its URL into ``target``."""

    def on_files(change: dict[str, Any]) -> None:
        files = change["new"]
        if not files:
            return
        first = files[0]
        content = first.get("content", b"")
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        button.value = ()  # the file's bytes must not stay in the widget state
        if upload is None:
            return
        problems.set_line(name, f"uploading {first.get('name') or 'image'}…", muted=True)
        try:
            url = upload(data)
        except ApiframeError as exc:
            problems.set_line(name, f"upload failed: {exc}")
            return
        except Exception as exc:  # a failed upload must never raise into the frontend
            logger.warning("image upload failed: %s", type(exc).__name__)
            problems.set_line(name, f"upload failed: {type(exc).__name__}")
            return
        problems.set_line(name, None)
        target.value = url

    button.observe(on_files, names="value")
