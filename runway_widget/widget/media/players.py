"""Which jobs have an open player, and filling players with their clips.

Only open players hold video bytes, so a saved notebook stays small. A job that finishes
while the panel watches opens its player by itself (the clip shows without a click) and
closes the one the previous such job opened; players the user opened stay, up to `MAX_OPEN`
in all, the one opened longest ago closing first. Loading a clip runs in
the media lane; what it finds reaches the view through `ui_updates`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..background import MEDIA, Lane
from ..job_view import JobView
from .playback import playback_for
from .source import MediaSource

MAX_OPEN = 4


class Players:
    """The open players of one panel."""

    def __init__(self, media: MediaSource, *, max_open: int = MAX_OPEN, lane: Lane = MEDIA
                 ) -> None:
        self._media = media
        self._max_open = max_open
        self._lane = lane
        self._lock = threading.Lock()
        self._open: OrderedDict[str, JobView] = OrderedDict()
        self._opened_by_finish: set[str] = set()

    def open(self, view: JobView, *, on_finish: bool = False) -> None:
        """Open ``view``'s player and load its clip (any thread); may close others.

        ``on_finish``: opened because the job just finished, not by the user. Opens from
        several threads (jobs finishing together) change the views under the lock, so a
        player closed by one never shows as open from another.
        """
        with self._lock:
            evicted = []
            if on_finish:
                evicted = [self._open.pop(task_id) for task_id in self._opened_by_finish
                           if task_id in self._open and task_id != view.task_id]
                self._opened_by_finish = {view.task_id}
            else:
                self._opened_by_finish.discard(view.task_id)
            self._open.pop(view.task_id, None)
            self._open[view.task_id] = view
            while len(self._open) > self._max_open:
                evicted.append(self._open.popitem(last=False)[1])
            for old in evicted:
                old.close_player()
            if not view.opened:
                view.show_note("loading the video…")
        self._lane.submit(("play", id(self), view.task_id), self._load, view)

    def close(self, view: JobView) -> None:
        """Close ``view``'s player and drop its bytes."""
        with self._lock:
            self._open.pop(view.task_id, None)
            self._opened_by_finish.discard(view.task_id)
            view.close_player()

    def is_open(self, view: JobView) -> bool:
        with self._lock:
            return view.task_id in self._open

    def _load(self, view: JobView) -> None:
        if not self.is_open(view):
            return
        playback = playback_for(view.job.snapshot(), self._media)
        with self._lock:  # a close() meanwhile wins: no bytes for a closed player
            if view.task_id not in self._open:
                return
            if playback.data is not None:
                view.show_video_bytes(playback.data)
            elif playback.url is not None:
                view.show_video_url(playback.url)
            else:
                view.show_note(playback.note or "", error=playback.is_error)
