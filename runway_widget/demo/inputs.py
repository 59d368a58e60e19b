"""Loading the images and videos a request points at, from the web or from the demo's own disk.

URLs that point at the demo server itself (samples, uploads, earlier results) are read straight
from disk, so the demo works offline and never calls itself over HTTP from a render thread.
Other inputs are fetched with a timeout and a size cap: by ``requests`` from anywhere, or by
the `Fetch` the embedder gives (a gateway fetches participants' URLs under its outbound rule).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import requests
from PIL import Image, ImageOps

from .renderer import InputError

Fetch = Callable[[str, IO[bytes], int], None]
"""``fetch(url, sink, cap)`` writes at most ``cap`` bytes of ``url`` to ``sink``, or raises
`InputError` saying why not."""

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_VIDEO_BYTES = 100 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
TIMEOUT = (5.0, 30.0)  # connect, read


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


class InputLoader:
    """Implements the renderer's ``Inputs``: ``image(url)`` and ``video(url)``."""

    def __init__(
        self,
        local_file: Callable[[str], Path | None],
        scratch_dir: Path,
        fetch: Fetch | None = None,
    ) -> None:
        self._local_file = local_file
        self._scratch_dir = Path(scratch_dir)
        self._download = fetch or download

    def image(self, url: str) -> Image.Image:
        """The picture at ``url`` as RGB, EXIF orientation applied."""
        local = self._local_file(url)
        if local is not None:
            data = local.read_bytes()
        else:
            buffer = io.BytesIO()
            self._download(url, buffer, MAX_IMAGE_BYTES)
            data = buffer.getvalue()
        try:
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InputError(f"the image at {_short(url)} is too large")
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
        except (OSError, Image.DecompressionBombError) as exc:
            raise InputError(f"{_short(url)} is not a readable image") from exc

    def video(self, url: str) -> Path:
        """A local file holding the video at ``url`` (downloaded to scratch space if remote)."""
        local = self._local_file(url)
        if local is not None:
            return local
        self._scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=self._scratch_dir, suffix=".video", delete=False
        ) as handle:
            try:
                self._download(url, handle, MAX_VIDEO_BYTES)
            except BaseException:
                handle.close()
                Path(handle.name).unlink(missing_ok=True)
                raise
            return Path(handle.name)


def download(url: str, sink: IO[bytes], cap: int) -> None:
    """The default `Fetch`: ``requests``, any address (the demo alone on a machine)."""
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as response:
            if response.status_code != 200:
                raise InputError(f"{_short(url)} answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise InputError(f"{_short(url)} is larger than {cap // 2**20} MB")
            received = 0
            for chunk in response.iter_content(64 * 1024):
                received += len(chunk)
                if received > cap:
                    raise InputError(f"{_short(url)} is larger than {cap // 2**20} MB")
                sink.write(chunk)
    except requests.RequestException as exc:
        raise InputError(f"could not load {_short(url)} ({type(exc).__name__})") from exc
