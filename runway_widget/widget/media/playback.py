"""What an opened player gets: the clip's bytes, its remote URL, or a line saying why not.

A file the package saved, or a URL on the client's own backend, is read in the kernel and
sent through the widget (the browser may not reach the kernel's machine); a remote http(s)
URL is played by the browser itself. Reading may be slow, so `playback_for` runs in the media
lane, never on the kernel thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...models import is_http_url
from ..job import JobState
from .source import VIDEO_LIMIT, MediaSource, MediaTooLarge, MediaUnavailable


@dataclass(frozen=True)
class Playback:
    """Exactly one of ``data``, ``url`` or ``note`` is set."""

    data: bytes | None = None
    url: str | None = None
    note: str | None = None
    is_error: bool = False


def playback_for(state: JobState, media: MediaSource, limit: int = VIDEO_LIMIT) -> Playback:
    """How to show the clip of a finished job."""
    task = state.task
    if task is None or not task.is_finished:
        return Playback(note="no video: the job has not finished")
    url = task.video_url
    path = state.local_path if state.local_path and Path(state.local_path).is_file() else None
    if path is not None:
        try:
            return Playback(data=media.read_file(path, limit))
        except MediaTooLarge as exc:
            if is_http_url(url) and not media.is_local(url):
                return Playback(url=url)
            return Playback(note=f"The video is too large to show here ({exc}); "
                                 f"it is saved at {path}")
        except MediaUnavailable:
            pass
    if media.is_local(url):
        try:
            return Playback(data=media.read_url(str(url), limit))
        except MediaTooLarge as exc:
            return Playback(note=f"The video is too large to show here ({exc}): save it and "
                                 "open the file, or open the link if this browser can reach "
                                 "the kernel's machine.")
        except MediaUnavailable as exc:
            return Playback(note=f"The video is no longer available from {url} ({exc}).",
                            is_error=True)
    if is_http_url(url):
        return Playback(url=url)
    return Playback(note=f"no playable video URL: {str(url)[:80]}", is_error=True)
