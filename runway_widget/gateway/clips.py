"""Finished clips, fetched once from the upstream into the gateway's own folder.

Provider URLs expire; the gateway's copy does not. Replicas share the folder (a volume they
all mount), so any of them serves any clip, and a clip stored survives the replica that
copied it; a copy is written to a temporary name and renamed into place, so no replica ever
serves half a clip. Each clip is saved as
``<video_key>.mp4``, where ``video_key`` is a random capability: the URL is told only to the
clip's owner (in their task's ``video_url``), so a browser ``<video>`` tag, which cannot send
an ``Authorization`` header, can still play it. Served with Range by tornado's
``StaticFileHandler`` (`VideoHandler`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import IO

from tornado.web import HTTPError, StaticFileHandler

from .._http.deadlines import DeadlinePassed
from .._http.outbound import OutboundPolicy, OutboundRefused, outbound_transport
from .._http.session import ReplyTooLarge, UnwantedStatus
from .._http.transport import TransportError
from .._version import __version__
from ..client.downloads import save_atomically
from .lanes import Lane, LaneClosed, LaneFull, OwnerQueues
from .metrics import Meter

__all__ = ["ClipStore", "VideoHandler"]

logger = logging.getLogger("runway_widget.gateway")

ATTEMPTS = 3
RETRY_PAUSE = 2.0  # seconds before the second attempt; twice that before the third
WORKERS = 4
WAITING = 10_000  # one per finished task waiting for its copy
SIZE_SECONDS = 30.0  # the folder's size is counted again at most this often (it may be large)
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class ClipStore:
    """Downloads each finished clip once, in a lane of its own, and says where it is.

    Copies follow the outbound rule (``policy``: the upstream's own origin is trusted,
    any other address is judged), within ``limit`` bytes, ``base_seconds`` to start and
    ``min_rate`` bytes a second after that. A failed attempt is tried again later from the
    lane's queue, never by sleeping in a worker; a refused URL is not tried again. Each
    clip's owner (its participant) copies one clip at a time, retries included, and owners
    take turns: clips that trickle hold one worker, and delay only their owner's others.
    """

    def __init__(
        self,
        folder: Path,
        policy: OutboundPolicy,
        on_stored: Callable[[str, Path | None], None],
        *,
        limit: int,
        base_seconds: float,
        min_rate: float,
        pause: float = RETRY_PAUSE,
        workers: int = WORKERS,
        meter: Meter | None = None,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._on_stored = on_stored
        self._limit, self._base_seconds, self._min_rate = limit, base_seconds, min_rate
        self._pause = pause
        self._meter = meter or Meter()
        self._size: tuple[float, tuple[int, int]] | None = None  # when counted, the count
        self._transport = outbound_transport(
            policy, user_agent=f"runway_widget-gateway/{__version__}", timeout=base_seconds
        )
        self._lane = Lane("gateway-clips", workers, WAITING)
        self._owners: OwnerQueues[str, tuple[str, str]] = OwnerQueues(WAITING)
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def path_for(self, video_key: str) -> Path:
        if not _KEY.match(video_key):
            raise ValueError("not a video key")
        return self.folder / f"{video_key}.mp4"

    def fetch_later(self, task_id: str, url: str, video_key: str, *, owner: Hashable) -> None:
        """Queue one download of ``owner``'s clip (a second call for the same task while
        queued does nothing)."""
        with self._lock:
            if task_id in self._pending:
                return
            self._pending.add(task_id)
        start = self._owners.put(owner, task_id, (url, video_key))
        if start is None:
            logger.warning("clip of task %s not copied: its owner has too many waiting", task_id)
            self._finish(task_id, None)
        elif start:
            self._turn(owner)

    @property
    def waiting(self) -> int:
        """Copies queued for a free worker (or for their retry)."""
        return self._lane.waiting

    def size(self) -> tuple[int, int]:
        """(clips, bytes) in the folder, every replica's; counted at most every `SIZE_SECONDS`."""
        now = time.monotonic()
        if self._size is None or now - self._size[0] > SIZE_SECONDS:
            self._size = (now, _folder_size(self.folder))
        return self._size[1]

    def close(self) -> None:
        """Drop queued copies and record nothing more: a restart brings them in again."""
        with self._lock:
            self._closed = True
        self._lane.close()
        self._transport.close()

    def _turn(self, owner: Hashable, retry: tuple[str, str, str, int] | None = None) -> None:
        """Queue ``owner``'s turn in the lane: a copy's next attempt (task, url, key, attempt;
        after its pause), else their next clip."""
        try:
            if retry is None:
                self._lane.submit(self._copy_next, owner)
            else:
                self._lane.submit_after(self._pause * (retry[3] - 1), self._attempt, owner, *retry)
        except LaneClosed:
            return
        except LaneFull as exc:
            dropped = [retry[0]] if retry is not None else []
            dropped += [task_id for task_id, _ in self._owners.drop(owner)]
            for task_id in dropped:
                logger.warning("clip of task %s not copied: %s", task_id, exc)
                self._finish(task_id, None)

    def _copy_next(self, owner: Hashable) -> None:
        task_id, (url, key) = self._owners.take(owner)
        self._attempt(owner, task_id, url, key, 1)

    def _attempt(self, owner: Hashable, task_id: str, url: str, key: str, attempt: int) -> None:
        stored: Path | None = None
        try:
            path = self.path_for(key)
            save_atomically(path, functools.partial(self._copy, url))
            stored = path
        except OutboundRefused as exc:
            logger.warning("clip of task %s not copied: %s", task_id, exc)
        except (OSError, TransportError, UnwantedStatus, DeadlinePassed, ReplyTooLarge) as exc:
            logger.warning("clip of task %s: attempt %d failed: %s", task_id, attempt, _why(exc))
            if attempt < ATTEMPTS:  # still the owner's turn: their other clips wait
                self._turn(owner, (task_id, url, key, attempt + 1))
                return
        except Exception:
            logger.exception("clip of task %s: the copy failed", task_id)
        self._finish(task_id, stored)
        self._next_turn(owner)

    def _next_turn(self, owner: Hashable) -> None:
        if self._owners.done(owner):
            self._turn(owner)

    def _copy(self, url: str, out: IO[bytes]) -> None:
        with self._meter.upstream("clip"):
            self._transport.download(
                url,
                out,
                limit=self._limit,
                base_seconds=self._base_seconds,
                min_rate=self._min_rate,
            )

    def _finish(self, task_id: str, path: Path | None) -> None:
        with self._lock:
            self._pending.discard(task_id)
            if self._closed:
                return
        try:
            self._on_stored(task_id, path)
        except Exception:
            logger.exception("clip of task %s: could not record the copy", task_id)


def _folder_size(folder: Path) -> tuple[int, int]:
    clips = size = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".mp4") and not entry.name.startswith("."):
                try:
                    size += entry.stat().st_size
                except OSError:  # removed meanwhile
                    continue
                clips += 1
    return clips, size


def _why(exc: BaseException) -> str:
    """A failure in a few words, never the URL (a provider's may carry a signature)."""
    if isinstance(exc, UnwantedStatus):
        return f"HTTP {exc.status}"
    return type(exc).__name__


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
