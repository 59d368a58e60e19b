"""Saving a finished job's clip into the download folder, off the kernel thread."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ApiframeError
from ...models import is_http_url, video_filename
from ..background import MEDIA
from ..job import Job

if TYPE_CHECKING:
    from ...client.apiframe import ApiframeClient


class ClipSaver:
    """Downloads clips into ``folder`` and journals where each went."""

    def __init__(self, client: ApiframeClient, folder: Path) -> None:
        self._client = client
        self.folder = folder

    def save_later(self, job: Job) -> None:
        """Save in the media lane (a click must not wait on a download)."""
        MEDIA.submit(("save", id(self), job.task_id), self.save, job)

    def save(self, job: Job) -> Path | None:
        """Download now; the job says where the clip went or why it did not."""
        task = job.task
        if task is None or not is_http_url(task.video_url) or not job.start_saving():
            return None
        target = self.folder / video_filename(job.prompt, job.task_id)
        try:
            if target.is_file():
                self._client.store.record_download(job.task_id, target)
            else:  # download() journals the saved path itself
                target = Path(self._client.download(task, target))
        except (ApiframeError, OSError) as exc:
            job.save_failed(str(exc))
            return None
        job.saved(str(target))
        return target
