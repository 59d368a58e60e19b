"""The bundled sample pictures and a sample clip derived from them, served under /samples/.

The clip is not shipped: it is rendered from the lighthouse picture the first time it is asked
for, then kept for the life of the process.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

from .inputs import InputLoader
from .renderer import RenderSpec, render

SAMPLES_DIR = Path(__file__).with_name("samples")
SAMPLE_IMAGES = ("lighthouse.png", "landscape.jpg")
SAMPLE_CLIP = "clip.mp4"
_CLIP_SPEC = RenderSpec(
    "image2video",
    "the lighthouse at dusk, then the hills",
    image_url=f"sample:{SAMPLE_IMAGES[0]}",
    end_image_url=f"sample:{SAMPLE_IMAGES[1]}",
)

_lock = threading.Lock()
_cache_dir: Path | None = None


def _bundled(url: str) -> Path | None:
    name = url.removeprefix("sample:")
    return SAMPLES_DIR / name if name in SAMPLE_IMAGES else None


def sample_clip() -> Path:
    """The derived 5 s sample clip, rendered once per process (thread-safe)."""
    global _cache_dir
    with _lock:
        if _cache_dir is None:
            _cache_dir = Path(tempfile.mkdtemp(prefix="runway-widget-samples-"))
            atexit.register(shutil.rmtree, _cache_dir, True)
        path = _cache_dir / SAMPLE_CLIP
        if not path.exists():
            render(_CLIP_SPEC, path, InputLoader(_bundled, _cache_dir))
        return path


def sample_path(name: str) -> Path | None:
    """The file behind ``/samples/<name>``, or None for a name that is not a sample."""
    if name == SAMPLE_CLIP:
        return sample_clip()
    return _bundled(name)
