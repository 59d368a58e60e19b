"""The demo renderer makes clips a browser plays: checked by decoding them with PyAV."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import pytest

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

from runway_widget.demo.inputs import InputLoader  # noqa: E402
from runway_widget.demo.renderer import (  # noqa: E402
    InputError,
    RenderSpec,
    fit_longest_side,
    render,
    size_for_ratio,
)
from runway_widget.demo.samples import SAMPLES_DIR, sample_clip  # noqa: E402
from runway_widget.models import ASPECT_RATIOS  # noqa: E402

LIGHTHOUSE = SAMPLES_DIR / "lighthouse.png"
LANDSCAPE = SAMPLES_DIR / "landscape.jpg"


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "width": stream.width,
            "height": stream.height,
            "duration": float(container.duration) / av.time_base,
            "fps": stream.average_rate,
            "audio": len(container.streams.audio),
        }


def frames(path: Path, *indices: int) -> list:
    """RGB arrays of the given frame indices (negative counts from the end)."""
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
        return [decoded[i].to_ndarray(format="rgb24").astype(np.int16) for i in indices]


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def loader(tmp_path: Path, files: dict[str, Path]) -> InputLoader:
    return InputLoader(files.get, tmp_path / "scratch")


def as_rgb(path: Path, size: tuple[int, int]):
    return np.asarray(Image.open(path).convert("RGB").resize(size), dtype=np.int16)


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_text2video_is_a_playable_faststart_h264_clip_in_the_asked_aspect_ratio(tmp_path, ratio):
    out = render(
        RenderSpec("text2video", "a lighthouse in a storm", aspect_ratio=ratio),
        tmp_path / "clip.mp4",
        loader(tmp_path, {}),
    )
    info = probe(out)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert info["audio"] == 0
    assert info["fps"] == Fraction(24)
    assert abs(info["duration"] - 5) <= 0.2
    assert max(info["width"], info["height"]) == 640
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0
    rw, rh = (int(x) for x in ratio.split(":"))
    assert abs(info["width"] / info["height"] - rw / rh) < 0.01
    assert (info["width"], info["height"]) == size_for_ratio(ratio)
    boxes = top_level_boxes(out)  # faststart: a browser can play it before it has it all
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat")


def test_ten_second_clip_lasts_ten_seconds(tmp_path):
    out = render(
        RenderSpec("text2video", "slow tide", duration=10),
        tmp_path / "ten.mp4",
        loader(tmp_path, {}),
    )
    assert abs(probe(out)["duration"] - 10) <= 0.2


def test_text2video_is_deterministic_and_seeded_by_the_prompt(tmp_path):
    inputs = loader(tmp_path, {})
    a = render(RenderSpec("text2video", "red dawn"), tmp_path / "a.mp4", inputs)
    b = render(RenderSpec("text2video", "red dawn"), tmp_path / "b.mp4", inputs)
    c = render(RenderSpec("text2video", "blue night"), tmp_path / "c.mp4", inputs)
    (fa, la), (fb,), (fc,) = frames(a, 0, -1), frames(b, 0), frames(c, 0)
    assert np.abs(fa - fb).mean() < 1.0
    assert np.abs(fa - fc).mean() > 10
    assert np.abs(fa - la).mean() > 10, "the picture moves"


@pytest.mark.parametrize("kind", ["text2video", "image2video", "video2video"])
def test_flip_mirrors_the_frames_vertically(tmp_path, kind):
    files = {"http://in/lighthouse.png": LIGHTHOUSE, "http://in/clip.mp4": sample_clip()}
    inputs = loader(tmp_path, files)
    fields = {
        "text2video": {"aspect_ratio": "4:3"},
        "image2video": {"image_url": "http://in/lighthouse.png"},
        "video2video": {"video_url": "http://in/clip.mp4"},
    }[kind]
    plain = render(RenderSpec(kind, "upside down", **fields), tmp_path / "p.mp4", inputs)
    flipped = render(
        RenderSpec(kind, "upside down", flip=True, **fields), tmp_path / "f.mp4", inputs
    )
    (p,), (f,) = frames(plain, 0), frames(flipped, 0)
    assert np.abs(f - p[::-1]).mean() < 2.0
    assert np.abs(f - p).mean() > 10


def test_image2video_starts_on_the_image_and_follows_its_aspect(tmp_path):
    inputs = loader(tmp_path, {"http://in/l.png": LIGHTHOUSE})
    out = render(
        RenderSpec("image2video", "pan", image_url="http://in/l.png"), tmp_path / "i.mp4", inputs
    )
    info = probe(out)
    source = Image.open(LIGHTHOUSE)
    assert (info["width"], info["height"]) == fit_longest_side(*source.size)
    assert abs(info["duration"] - 5) <= 0.2
    first, last = frames(out, 0, -1)
    expected = as_rgb(LIGHTHOUSE, (info["width"], info["height"]))
    assert np.abs(first - expected).mean() < 6
    assert np.abs(last - expected).mean() > np.abs(first - expected).mean(), "it zooms"


def test_image2video_fades_to_the_end_image(tmp_path):
    inputs = loader(tmp_path, {"http://in/l.png": LIGHTHOUSE, "http://in/s.jpg": LANDSCAPE})
    spec = RenderSpec(
        "image2video", "fade", image_url="http://in/l.png", end_image_url="http://in/s.jpg"
    )
    out = render(spec, tmp_path / "fade.mp4", inputs)
    info = probe(out)
    first, last = frames(out, 0, -1)
    size = (info["width"], info["height"])
    start, end = as_rgb(LIGHTHOUSE, size), as_rgb(LANDSCAPE, size)
    assert np.abs(first - start).mean() < 6
    # The end image is cover-cropped to the clip's aspect; both are landscape-ish, so the
    # last frame is much nearer to it than to the start image.
    assert np.abs(last - end).mean() < 0.5 * np.abs(last - start).mean()


def test_video2video_restyles_the_sample_clip(tmp_path):
    source = sample_clip()
    inputs = loader(tmp_path, {"http://in/clip.mp4": source})
    out = render(
        RenderSpec("video2video", "neon grade", video_url="http://in/clip.mp4"),
        tmp_path / "v.mp4",
        inputs,
    )
    info, src = probe(out), probe(source)
    assert (info["width"], info["height"]) == (src["width"], src["height"])
    assert abs(info["duration"] - 5) <= 0.2
    (graded,), (original,) = frames(out, 0), frames(source, 0)
    assert np.abs(graded - original).mean() > 5, "a visible grade"
    corr = np.corrcoef(graded.mean(axis=2).ravel(), original.mean(axis=2).ravel())[0, 1]
    assert corr > 0.8, "the same picture underneath"


def test_video2video_loops_a_short_input_to_the_asked_duration(tmp_path):
    short = tmp_path / "short.mp4"
    with av.open(str(short), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(30):
            rgb = np.full((240, 320, 3), (i * 8) % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    inputs = loader(tmp_path, {"http://in/short.mp4": short})
    out = render(
        RenderSpec("video2video", "loop", video_url="http://in/short.mp4", duration=10),
        tmp_path / "loop.mp4",
        inputs,
    )
    info = probe(out)
    assert (info["width"], info["height"]) == (640, 480)
    assert abs(info["duration"] - 10) <= 0.2


def test_unreachable_input_is_an_input_error(tmp_path):
    inputs = loader(tmp_path, {})
    spec = RenderSpec("image2video", "x", image_url="http://127.0.0.1:9/missing.png")
    with pytest.raises(InputError, match="could not load"):
        render(spec, tmp_path / "never.mp4", inputs)
    assert not (tmp_path / "never.mp4").exists()


def test_input_that_is_not_an_image_is_an_input_error(tmp_path):
    bogus = tmp_path / "bogus.png"
    bogus.write_bytes(b"not a picture")
    inputs = loader(tmp_path, {"http://in/bogus.png": bogus})
    with pytest.raises(InputError, match="not a readable image"):
        render(
            RenderSpec("image2video", "x", image_url="http://in/bogus.png"),
            tmp_path / "n.mp4",
            inputs,
        )


def test_spec_key_ignores_webhook_and_model_fields():
    base = {"prompt": "same", "generation_type": "text2video", "aspect_ratio": "1:1"}
    with_hook = {**base, "webhook_url": "https://x/hook", "webhook_secret": "s", "model": "gen3"}
    assert RenderSpec.from_payload(base).key() == RenderSpec.from_payload(with_hook).key()
    assert (
        RenderSpec.from_payload(base).key() != RenderSpec.from_payload({**base, "flip": True}).key()
    )
    assert (
        RenderSpec.from_payload({"prompt": "d", "generation_type": "text2video"}).key()
        == (
            RenderSpec.from_payload({"prompt": "d", "generation_type": "text2video", "duration": 5})
        ).key()
    )
