"""Downloading a video: checked URL, chosen file name, saved whole or not at all."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .._http.deadlines import DeadlinePassed
from .._http.replies import download_error
from .._http.session import ReplyTooLarge, Session, UnwantedStatus
from .._http.transport import TransportError
from .._secrets import Redactor
from ..errors import ApiframeError, shorten
from ..models import Task, is_http_url, video_filename

__all__ = ["download_video", "save_atomically"]


def download_video(
    session: Session,
    task_or_url: Task | str,
    path: str | os.PathLike[str],
    *,
    limit: int,
    timeout: float,
    min_rate: float,
    redact: Redactor,
) -> Path:
    """Save a task's (or a URL's) video to ``path``, a file or a folder; returns the file.

    At most ``limit`` bytes at ``min_rate`` bytes a second or better; failures become
    `ApiframeError`s with any secret in the URL scrubbed by ``redact``.
    """
    url, task_id = _video_url(task_or_url)
    destination = Path(path).expanduser()
    if destination.is_dir():
        destination = destination / video_filename(None, task_id)
    fill = functools.partial(
        session.download, url, limit=limit, base_seconds=timeout, min_rate=min_rate
    )
    try:
        save_atomically(destination, fill)
    except (TransportError, DeadlinePassed, ReplyTooLarge, UnwantedStatus) as exc:
        raise download_error(exc, url, redact=redact) from None
    return destination


def _video_url(task_or_url: Task | str) -> tuple[str, str | None]:
    """The http(s) URL to download and the task it belongs to (if a task was given)."""
    task_id: str | None = None
    if isinstance(task_or_url, Task):
        task_id = task_or_url.task_id
        url = task_or_url.video_url
        if not url:
            raise ApiframeError(
                f"task {shorten(task_id)} has no video yet (status {shorten(task_or_url.status)!r})"
            )
    else:
        url = str(task_or_url)
    if not is_http_url(url):
        raise ApiframeError(f"not an http(s) video URL: {shorten(url, 100)!r}")
    return url, task_id


def save_atomically(destination: Path, fill: Callable[[IO[bytes]], object]) -> None:
    """``fill`` a temporary file next to ``destination``, then rename it into place.

    The destination is the whole file or untouched, never half-written (a download cut off,
    a full disk, Ctrl-C); the temporary file is removed on any failure.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets, not videos
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
