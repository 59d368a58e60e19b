"""Poster frames from real demo clips: small JPEGs, cached by task id, never a crash."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from runway_widget.widget.offline.posters import (
    POSTER_LIMIT,
    PosterCache,
    PosterError,
    data_uri,
    poster_jpeg,
)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three finished demo clips: wide, tall and very wide."""
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.demo import DemoServer
    from runway_widget.store import JobStore

    folder = tmp_path_factory.mktemp("clips")
    found = {}
    with DemoServer(job_seconds=0.2) as server:
        client = ApiframeClient(api_key=server.api_key, base_url=server.base_url,
                                store=JobStore(folder / "jobs.jsonl"), requests_per_second=50)
        for ratio in ("16:9", "9:16", "21:9"):
            task = client.wait(client.imagine(prompt=f"a lighthouse {ratio}", duration=5,
                                              generation_type="text2video",
                                              aspect_ratio=ratio), poll_interval=0.1)
            found[ratio] = client.download(task, folder / f"{ratio.replace(':', 'x')}.mp4")
        client.close()
    return found


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "21:9"])
def test_a_poster_is_a_small_jpeg_of_the_clip_with_its_shape(clips, ratio: str) -> None:
    data = poster_jpeg(clips[ratio])
    assert data[:3] == b"\xff\xd8\xff" and len(data) <= POSTER_LIMIT
    image = Image.open(io.BytesIO(data))
    assert image.width == 192
    wide, tall = (int(n) for n in ratio.split(":"))
    assert abs(image.height - round(192 * tall / wide)) <= 2
    # A real frame, not a blank: the demo draws a coloured pattern.
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50


def test_not_a_video_raises_poster_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(PosterError):
        poster_jpeg(junk)
    with pytest.raises(PosterError):
        poster_jpeg(tmp_path / "missing.mp4")


def test_cache_makes_a_poster_once_and_survives_a_deleted_clip(clips, tmp_path: Path) -> None:
    copy = tmp_path / "clip.mp4"
    copy.write_bytes(clips["16:9"].read_bytes())
    cache = PosterCache(tmp_path / "posters")
    first = cache.get("task/../1", copy)
    assert first is not None
    assert [p.name for p in (tmp_path / "posters").iterdir()] == ["task_.._1.jpg"]
    copy.unlink()
    assert cache.get("task/../1", copy) == first
    assert cache.get("other", copy) is None
    assert cache.get("other", None) is None


def test_data_uri_is_base64_jpeg() -> None:
    assert data_uri(b"\xff\xd8\xff") == "data:image/jpeg;base64,/9j/"
