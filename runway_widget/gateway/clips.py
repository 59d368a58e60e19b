"""Finished clips, fetched once from the upstream into the gateway's own folder.

Provider URLs expire; the gateway's copy does not. Each clip is saved as
``<video_key>.mp4``, where ``video_key`` is a random capability: the URL is told only to the
clip's owner (in their task's ``video_url``), so a browser ``<video>`` tag, which cannot send
an ``Authorization`` header, can still play it. Served with Range by tornado's
``StaticFileHandler`` (`VideoHandler`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from tornado.web import HTTPError, StaticFileHandler

from ..client.apiframe import ApiframeClient
from ..errors import ApiframeError

__all__ = ["ClipStore", "VideoHandler"]

logger = logging.getLogger("runway_widget.gateway")

ATTEMPTS = 3
RETRY_PAUSE = 2.0
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class ClipStore:
    """Downloads each finished clip once, in the background, and says where it is."""

    def __init__(
        self,
        folder: Path,
        client: ApiframeClient,
        executor: Executor,
        on_stored: Callable[[str, Path | None], None],
        *,
        pause: float = RETRY_PAUSE,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._client = client
        self._executor = executor
        self._on_stored = on_stored
        self._pause = pause
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def path_for(self, video_key: str) -> Path:
        if not _KEY.match(video_key):
            raise ValueError("not a video key")
        return self.folder / f"{video_key}.mp4"

    def fetch_later(self, task_id: str, url: str, video_key: str) -> None:
        """Queue one download (a second call for the same task while queued does nothing)."""
        with self._lock:
            if task_id in self._pending:
                return
            self._pending.add(task_id)
        self._executor.submit(self._fetch, task_id, url, video_key)

    def _fetch(self, task_id: str, url: str, video_key: str) -> None:
        path: Path | None = None
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    path = self._client.download(url, self.path_for(video_key))
                    break
                except ApiframeError as exc:
                    logger.warning("clip of task %s: attempt %d failed: %s", task_id, attempt, exc)
                    time.sleep(self._pause * attempt)
        finally:
            with self._lock:
                self._pending.discard(task_id)
        self._on_stored(task_id, path)


class VideoHandler(StaticFileHandler):
    """``GET/HEAD /videos/<key>.mp4`` with Range support, from the clip folder."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "private, max-age=3600")

    def get_content_type(self) -> str:
        return "video/mp4"

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if not _KEY.match(Path(absolute_path).stem) or not absolute_path.endswith(".mp4"):
            raise HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)
