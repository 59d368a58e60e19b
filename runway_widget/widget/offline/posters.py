"""Poster frames: one small JPEG per finished clip, for lists and saved notebooks.

A saved notebook is read without a kernel (GitHub, nbviewer, ``nbconvert``), so what the
panel made is shown there as still images inline in the output's HTML. They must stay small:
thirty of them sit in one output. A poster is a frame from early in the clip (the first
frame is often a fade), scaled to `POSTER_WIDTH` pixels wide and encoded as JPEG, lowering
the quality until it fits `POSTER_LIMIT` bytes.

Posters are cached on disk by task id (`PosterCache`), so a history of thirty clips is
decoded once, not on every panel start.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger("runway_widget.widget.offline.posters")

POSTER_WIDTH = 192
POSTER_LIMIT = 15 * 1024
_QUALITIES = (75, 60, 45, 30)
_POSTER_AT = 1.0  # seconds into the clip, or a third of it when shorter
_SCAN_LIMIT = 120  # frames decoded at most while looking for that moment
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class PosterError(Exception):
    """No poster could be made from this file (not a video, unreadable, no frames)."""


Video: TypeAlias = str | os.PathLike[str] | bytes  # a local file, or a clip's bytes


def poster_jpeg(video: Video, width: int = POSTER_WIDTH) -> bytes:
    """A JPEG of one frame of a video (a file or its bytes), ``width`` pixels wide, at most
    `POSTER_LIMIT`."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        raise PosterError("PyAV is not installed") from exc
    name = "the clip" if isinstance(video, bytes) else Path(video).name
    source = io.BytesIO(video) if isinstance(video, bytes) else os.fspath(video)
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise PosterError("no video stream")
            stream = container.streams.video[0]
            image = _frame_near(container, stream)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise PosterError(f"cannot read {name}: {exc}") from None
    if image is None:
        raise PosterError(f"no frame in {name}")
    height = max(2, round(image.height * width / max(1, image.width)))
    return _fit_jpeg(image.convert("RGB").resize((width, height)))


def _frame_near(container: Any, stream: Any) -> Image | None:
    """The frame at `_POSTER_AT` s (or a third of a shorter clip), else the last decoded."""
    duration = float(stream.duration * stream.time_base) if stream.duration else None
    target = _POSTER_AT if duration is None else min(_POSTER_AT, duration / 3)
    chosen = None
    for count, frame in enumerate(container.decode(stream)):
        chosen = frame
        if (frame.time or 0.0) >= target or count >= _SCAN_LIMIT:
            break
    return chosen.to_image() if chosen is not None else None


def _fit_jpeg(image: Image) -> bytes:
    data = b""
    for quality in _QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=True)
        data = buffer.getvalue()
        if len(data) <= POSTER_LIMIT:
            return data
    raise PosterError(f"poster still {len(data)} bytes at the lowest quality")


def data_uri(jpeg: bytes) -> str:
    """``data:image/jpeg;base64,…`` for an inline ``<img>``."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


class PosterCache:
    """Posters by task id in one folder; made from the clip the first time they are asked."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _path(self, task_id: str) -> Path:
        return self.folder / f"{_SAFE_NAME.sub('_', task_id)[:100]}.jpg"

    def cached(self, task_id: str) -> bytes | None:
        """The poster of a task if it was made before (never decodes a clip)."""
        try:
            return self._path(task_id).read_bytes()
        except OSError:
            return None

    def get(self, task_id: str, video: Video | None) -> bytes | None:
        """The poster of a task, made from ``video`` (a file or the clip's bytes) when not
        cached; None when impossible."""
        cached = self.cached(task_id)
        if cached is not None:
            return cached
        path = self._path(task_id)
        if video is None or (not isinstance(video, bytes) and not Path(video).is_file()):
            return None
        try:
            data = poster_jpeg(video)
        except PosterError as exc:
            logger.info("no poster for task %s: %s", task_id, exc)
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".jpg.part")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError as exc:
            logger.info("poster of task %s not cached: %s", task_id, exc)
        return data
