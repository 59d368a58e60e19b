"""Real, playable clips for the demo backend, rendered with PyAV.

Every clip is H.264 in an MP4 with ``faststart``, ``yuv420p``, 24 fps, no audio, the longest
side 640 px: what Chromium plays inline. Frames are built directly as Y/U/V planes with numpy
and Pillow, so no per-frame colour conversion is needed and a clip renders many times faster
than real time on a laptop.

- text2video: a flowing, palette-cycled pattern seeded by the prompt, the prompt as a caption;
- image2video: a slow zoom and drift over the image, cross-fading to ``end_image_url``;
- video2video: the input's frames with a colour grade seeded by the prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FPS = 24
LONGEST_SIDE = 640
DEFAULT_DURATION = 5
DEFAULT_ASPECT_RATIO = "16:9"
# x264 settings per generation type, chosen by measurement (benchmarks/render_speed.py).
# Pictures and videos: "superfast" without B-frames or lookahead, about twice as fast as
# "veryfast" for a similar size. The smooth synthetic text2video frames: "ultrafast" costs half
# the CPU of that and still gives smaller files at the same quality (PSNR > 55 dB).
X264_OPTIONS = {
    "text2video": {"preset": "ultrafast", "crf": "23"},
    "image2video": {"preset": "superfast", "crf": "23", "x264-params": "bframes=0:rc-lookahead=0"},
    "video2video": {"preset": "superfast", "crf": "23", "x264-params": "bframes=0:rc-lookahead=0"},
}

_RATIOS = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "21:9": (21, 9),
}
# BT.601 limited range, the colour space players assume for SD H.264 without a colour tag.
_RGB_TO_YUV = np.array(
    [[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]], dtype=np.float32
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


class InputError(Exception):
    """An input (image or video URL) could not be loaded; the message is shown to the user."""


class RenderCancelled(Exception):
    """The render was stopped on request (the server is shutting down)."""


class Inputs(Protocol):
    """Where the renderer gets its inputs from (URLs resolved by the server)."""

    def image(self, url: str) -> Image.Image: ...

    def video(self, url: str) -> Path: ...


@dataclass(frozen=True)
class RenderSpec:
    """Everything that decides what a clip looks like; equal specs give identical clips."""

    generation_type: str
    prompt: str
    image_url: str | None = None
    end_image_url: str | None = None
    video_url: str | None = None
    aspect_ratio: str | None = None
    duration: int = DEFAULT_DURATION
    flip: bool = False

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RenderSpec:
        """The rendering part of a (validated) request body; webhook and model fields drop out."""
        kind = payload.get("generation_type") or "text2video"
        return cls(
            generation_type=kind,
            prompt=str(payload.get("prompt") or ""),
            image_url=payload.get("image_url"),
            end_image_url=payload.get("end_image_url"),
            video_url=payload.get("video_url"),
            aspect_ratio=(payload.get("aspect_ratio") or DEFAULT_ASPECT_RATIO)
            if kind == "text2video"
            else None,
            duration=int(payload.get("duration") or DEFAULT_DURATION),
            flip=bool(payload.get("flip")),
        )

    def key(self) -> str:
        """A short stable digest, used as the cache key and file name of the render."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    @property
    def frame_count(self) -> int:
        return self.duration * FPS


def size_for_ratio(aspect_ratio: str) -> tuple[int, int]:
    """Output (width, height) for a named aspect ratio, longest side 640, both even."""
    rw, rh = _RATIOS[aspect_ratio]
    return fit_longest_side(rw, rh)


def fit_longest_side(width: int, height: int) -> tuple[int, int]:
    """Scale (width, height) so the longest side is 640; even sides, as yuv420p needs."""
    scale = LONGEST_SIDE / max(width, height)
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


def rgb_to_planes(rgb: np.ndarray) -> Planes:
    """RGB (h, w, 3) uint8 -> Y (h, w) and 2x2-averaged U, V (h/2, w/2), limited range."""
    yuv = rgb.astype(np.float32) @ _RGB_TO_YUV.T + _YUV_OFFSET
    h, w = rgb.shape[:2]
    chroma = yuv[:, :, 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    as_u8 = lambda a: np.clip(a + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
    return as_u8(yuv[:, :, 0]), as_u8(chroma[:, :, 0]), as_u8(chroma[:, :, 1])


def _rng(*parts: str) -> np.random.Generator:
    seed = hashlib.sha256("\x00".join(parts).encode()).digest()[:8]
    return np.random.default_rng(int.from_bytes(seed, "big"))


class _Writer:
    """Encodes Y/U/V planes into an MP4 at ``path`` (written to a temp name, then renamed)."""

    def __init__(self, path: Path, width: int, height: int, options: dict[str, str]) -> None:
        self._path = Path(path)
        self._partial = self._path.with_name(self._path.name + ".partial")
        self._container = av.open(
            str(self._partial), "w", format="mp4", options={"movflags": "+faststart"}
        )
        self._stream = self._container.add_stream("libx264", rate=FPS)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = dict(options)
        self._time_base = Fraction(1, FPS)
        self._count = 0

    def write(self, planes: Planes) -> None:
        y, u, v = planes
        packed = np.concatenate((y.ravel(), u.ravel(), v.ravel()))
        frame = av.VideoFrame.from_ndarray(packed.reshape(-1, y.shape[1]), format="yuv420p")
        frame.pts = self._count
        frame.time_base = self._time_base
        self._count += 1
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        os.replace(self._partial, self._path)

    def abort(self) -> None:
        with contextlib.suppress(av.error.FFmpegError, OSError):
            self._container.close()
        self._partial.unlink(missing_ok=True)


def _flipped(planes: Planes) -> Planes:
    return tuple(np.ascontiguousarray(p[::-1]) for p in planes)  # type: ignore[return-value]


_END = object()


def _produce(
    frames: Generator[Planes, None, None], out: queue.Queue[Any], stop: threading.Event
) -> None:
    """Build frames ahead of the encoder; ends with `_END` or the exception that stopped it."""
    item: Any = _END
    try:
        with contextlib.closing(frames):
            for planes in frames:
                while not stop.is_set():
                    try:
                        out.put(planes, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
    except BaseException as exc:  # handed to the encoding thread, which re-raises it
        item = exc
    out.put(item)


def _encode(
    path: Path,
    size: tuple[int, int],
    frames: Generator[Planes, None, None],
    spec: RenderSpec,
    cancel: threading.Event | None,
) -> None:
    """Encode while the next frames are built on a second thread (both release the GIL)."""
    writer = _Writer(path, *size, X264_OPTIONS[spec.generation_type])
    flip = spec.flip
    ahead: queue.Queue[Any] = queue.Queue(maxsize=8)
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(frames, ahead, stop), name="runway-widget-demo-frames", daemon=True
    )
    producer.start()
    try:
        while (item := ahead.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            if cancel is not None and cancel.is_set():
                raise RenderCancelled(str(path))
            writer.write(_flipped(item) if flip else item)
    except BaseException:
        stop.set()
        writer.abort()
        raise
    finally:
        stop.set()
        while producer.is_alive():
            with contextlib.suppress(queue.Empty):
                ahead.get_nowait()
            producer.join(0.05)
    writer.close()


def render(
    spec: RenderSpec,
    path: str | os.PathLike[str],
    inputs: Inputs,
    cancel: threading.Event | None = None,
) -> Path:
    """Render ``spec`` to an MP4 at ``path``; raises `InputError` when an input cannot load.

    Setting ``cancel`` stops a render between frames with `RenderCancelled`.
    """
    out = Path(path)
    if spec.generation_type == "text2video":
        size = size_for_ratio(spec.aspect_ratio or DEFAULT_ASPECT_RATIO)
        frames = _text_frames(spec, size)
    elif spec.generation_type == "image2video":
        if not spec.image_url:
            raise InputError("image_url is required for image2video")
        start = inputs.image(spec.image_url)
        end = inputs.image(spec.end_image_url) if spec.end_image_url else None
        size = fit_longest_side(*start.size)
        frames = _image_frames(spec, size, start, end)
    elif spec.generation_type == "video2video":
        if not spec.video_url:
            raise InputError("video_url is required for video2video")
        source = inputs.video(spec.video_url)
        size = fit_longest_side(*_video_size(source))
        frames = _video_frames(spec, size, source)
    else:
        raise InputError(f"unknown generation_type {spec.generation_type!r}")
    _encode(out, size, frames, spec, cancel)
    return out


# --- text2video -------------------------------------------------------------------------


def _palette(rng: np.random.Generator) -> np.ndarray:
    """A cyclic 256-entry RGB gradient through 4 seeded colours."""
    hues = (rng.random() + np.arange(4) * rng.uniform(0.12, 0.3)) % 1.0
    sat = rng.uniform(0.45, 0.9, 4)
    val = rng.uniform(0.35, 0.95, 4)
    anchors = np.stack([_hsv_to_rgb(h, s, v) for h, s, v in zip(hues, sat, val, strict=True)])
    anchors = np.vstack([anchors, anchors[:1]])
    pos = np.linspace(0, 4, 256, endpoint=False)
    lo = pos.astype(int)
    frac = (pos - lo)[:, None]
    return anchors[lo] * (1 - frac) + anchors[lo + 1] * frac


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb) * 255.0


def _pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth uint8 field of palette indices (wrapping), wide enough to pan across."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((height, width), np.float32)
    scale = max(height, width)
    for _ in range(4):
        fx, fy = rng.uniform(-3.0, 3.0, 2) * np.pi / scale
        field += rng.uniform(0.4, 1.0) * np.sin(xx * fx + yy * fy + rng.uniform(0, 2 * np.pi))
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    field += 0.8 * np.sin(np.hypot(xx - cx, yy - cy) * rng.uniform(6, 14) / scale)
    return (field * 40).astype(np.int32).astype(np.uint8)


@dataclass
class _Overlay:
    """A caption band, applied per frame as out = (plane * mul + add) >> 8 on its rows."""

    top: int
    mul_y: np.ndarray
    add_y: np.ndarray
    mul_c: np.ndarray
    add_c: np.ndarray

    def apply(self, planes: Planes) -> Planes:
        y, u, v = planes
        t, tc = self.top, self.top // 2
        y[t:] = (y[t:].astype(np.uint16) * self.mul_y + self.add_y) >> 8
        u[tc:] = (u[tc:].astype(np.uint16) * self.mul_c + self.add_c) >> 8
        v[tc:] = (v[tc:].astype(np.uint16) * self.mul_c + self.add_c) >> 8
        return y, u, v


def _wrap(text: str, font: Any, max_width: int, max_lines: int = 3) -> list[str]:
    """Greedy word wrap by measured width; an over-long last line ends with an ellipsis."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] += " …"
    for i, line in enumerate(lines):
        while len(line) > 1 and font.getlength(line) > max_width:
            line = line[:-2] + "…"
        lines[i] = line
    return lines or [""]


def _caption(text: str, width: int, height: int) -> _Overlay:
    """Draw the prompt once (Pillow's default font) as a translucent band at the bottom."""
    font_size = max(12, width // 32)
    try:
        font: Any = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        font = ImageFont.load_default()
    lines = _wrap(text, font, width - 20)
    line_height = font_size + 4
    band = (len(lines) * line_height + 12 + 1) // 2 * 2
    band = min(band, height // 2 // 2 * 2)
    mask = Image.new("L", (width, band), 0)
    draw = ImageDraw.Draw(mask)
    for i, line in enumerate(lines):
        draw.text((10, 6 + i * line_height), line, fill=255, font=font)
    alpha = np.asarray(mask, dtype=np.uint16)
    shade = 150  # the band keeps 150/256 of the picture behind it
    mul_y = (shade * (255 - alpha) // 255).astype(np.uint16)
    add_y = (235 * alpha).astype(np.uint16)
    mul_c = mul_y[::2, ::2]
    add_c = (128 * (256 - mul_c)).astype(np.uint16)
    return _Overlay(height - band, mul_y, add_y, mul_c, add_c)


def _text_frames(spec: RenderSpec, size: tuple[int, int]) -> Generator[Planes, None, None]:
    width, height = size
    rng = _rng("text2video", spec.prompt)
    yuv = _palette(rng).astype(np.float32) @ _RGB_TO_YUV.T + _YUV_OFFSET
    lut_y, lut_u, lut_v = np.clip(yuv + 0.5, 0, 255).astype(np.uint8).T.copy()
    pan = width // 2
    field = _pattern(rng, height, width + pan)
    field_c = field[::2, ::2].copy()
    overlay = _caption(spec.prompt, width, height)
    cycle_speed = rng.uniform(40, 90) * rng.choice([-1, 1])  # palette steps per second
    count = spec.frame_count
    for i in range(count):
        t = i / FPS
        x0 = round(pan * i / max(1, count - 1)) // 2 * 2
        shift = np.uint8(int(t * cycle_speed) % 256)
        idx = field[:, x0 : x0 + width] + shift
        idx_c = field_c[:, x0 // 2 : x0 // 2 + width // 2] + shift
        yield overlay.apply((np.take(lut_y, idx), np.take(lut_u, idx_c), np.take(lut_v, idx_c)))


# --- image2video ------------------------------------------------------------------------


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize and centre-crop ``image`` to exactly ``size``."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))),
        Image.Resampling.LANCZOS,
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


class _PlaneImages:
    """An image as three Pillow 'L' images (Y full size, U and V half), ready to zoom."""

    def __init__(self, image: Image.Image, size: tuple[int, int]) -> None:
        y, u, v = rgb_to_planes(np.asarray(_cover(image.convert("RGB"), size)))
        self.planes = [Image.fromarray(p) for p in (y, u, v)]

    def view(self, box: tuple[float, float, float, float]) -> list[Image.Image]:
        """The region ``box`` (in full-size pixels) scaled to the whole frame."""
        out = []
        for i, plane in enumerate(self.planes):
            k = 1 if i == 0 else 2
            left, top, right, bottom = box
            scaled = (left / k, top / k, right / k, bottom / k)
            if scaled == (0, 0, plane.width, plane.height):
                out.append(plane)
            else:
                # Bilinear rather than a cheaper box filter: its slight softening keeps
                # photo noise from shimmering, which would double the encoder's work and size.
                out.append(plane.resize(plane.size, Image.Resampling.BILINEAR, box=scaled))
        return out


def _zoom_box(
    size: tuple[int, int], zoom: float, drift: tuple[float, float]
) -> tuple[float, float, float, float]:
    """The crop box for a zoom factor (>= 1), drifting from the centre in direction ``drift``."""
    width, height = size
    bw, bh = width / zoom, height / zoom
    left = (width - bw) / 2 * (1 + drift[0])
    top = (height - bh) / 2 * (1 + drift[1])
    return (left, top, left + bw, top + bh)


def _ease(x: float) -> float:
    return x * x * (3 - 2 * x)


def _image_frames(
    spec: RenderSpec, size: tuple[int, int], start: Image.Image, end: Image.Image | None
) -> Generator[Planes, None, None]:
    rng = _rng("image2video", spec.prompt)
    first = _PlaneImages(start, size)
    last = _PlaneImages(end, size).view((0, 0, *size)) if end is not None else None
    drift = tuple(rng.uniform(-0.8, 0.8, 2))
    max_zoom = rng.uniform(1.12, 1.2)
    fade_from = 0.55  # the cross-fade takes the last 45%; the last frame is the end image
    count = spec.frame_count
    for i in range(count):
        x = i / max(1, count - 1)
        frame = first.view(_zoom_box(size, 1 + (max_zoom - 1) * _ease(x), drift))
        if last is not None and x > fade_from:
            a = _ease((x - fade_from) / (1 - fade_from))
            frame = [Image.blend(p, q, a) for p, q in zip(frame, last, strict=True)]
        yield np.asarray(frame[0]), np.asarray(frame[1]), np.asarray(frame[2])


# --- video2video ------------------------------------------------------------------------


def _video_size(path: Path) -> tuple[int, int]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError("video_url has no video stream")
            stream = container.streams.video[0]
            if not stream.width or not stream.height:
                raise InputError("video_url has no frame size")
            return stream.width, stream.height
    except av.error.FFmpegError as exc:
        raise InputError(f"video_url is not a readable video ({exc.strerror})") from exc


def _decoded(path: Path, size: tuple[int, int]) -> Iterator[tuple[float, Planes]]:
    """(seconds from the first frame, planes) for every frame of the input, scaled to size."""
    width, height = size
    n_y, n_c = width * height, (width // 2) * (height // 2)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or FPS)
        first: float | None = None
        for index, frame in enumerate(container.decode(stream)):
            when = frame.time if frame.time is not None else index / rate
            first = when if first is None else first
            flat = frame.reformat(width=width, height=height, format="yuv420p").to_ndarray()
            flat = flat.ravel()
            yield (
                when - first,
                (
                    flat[:n_y].reshape(height, width),
                    flat[n_y : n_y + n_c].reshape(height // 2, width // 2),
                    flat[n_y + n_c : n_y + 2 * n_c].reshape(height // 2, width // 2),
                ),
            )


def _resampled(path: Path, size: tuple[int, int], count: int) -> Generator[Planes, None, None]:
    """``count`` frames at 24 fps from the input, looping it when it is shorter."""
    produced = 0
    while produced < count:
        start = produced
        previous: Planes | None = None
        last_time = 0.0
        try:
            for when, planes in _decoded(path, size):
                while previous is not None and produced < count and (produced - start) / FPS < when:
                    yield previous
                    produced += 1
                previous, last_time = planes, when
        except av.error.FFmpegError as exc:
            raise InputError(f"video_url could not be decoded ({exc.strerror})") from exc
        if previous is None:
            raise InputError("video_url has no frames")
        end = last_time + 1 / FPS
        while produced < count and ((produced - start) / FPS < end or produced == start):
            yield previous
            produced += 1


def _grade(rng: np.random.Generator) -> Callable[[float], tuple[np.ndarray, ...]]:
    """Prompt-seeded look-up tables for Y, U, V, drifting gently over time."""
    gamma = rng.uniform(0.7, 1.35)
    contrast = rng.uniform(1.0, 1.3)
    saturation = rng.uniform(0.6, 1.6)
    tint = rng.uniform(-22, 22, 2)
    drift = rng.uniform(-10, 10, 2)
    levels = np.arange(256, dtype=np.float32)
    y = np.clip((levels - 16) / 219, 0, 1) ** gamma
    y = np.clip(16 + 219 * ((y - 0.5) * contrast + 0.5), 16, 235).astype(np.uint8)

    def tables(t: float) -> tuple[np.ndarray, ...]:
        wave = np.sin(t * 0.8)
        u = (levels - 128) * saturation + 128 + tint[0] + drift[0] * wave
        v = (levels - 128) * saturation + 128 + tint[1] + drift[1] * wave
        return y, np.clip(u, 16, 240).astype(np.uint8), np.clip(v, 16, 240).astype(np.uint8)

    return tables


def _video_frames(
    spec: RenderSpec, size: tuple[int, int], source: Path
) -> Generator[Planes, None, None]:
    tables = _grade(_rng("video2video", spec.prompt))
    for i, planes in enumerate(_resampled(source, size, spec.frame_count)):
        luts = tables(i / FPS)
        yield tuple(np.take(lut, p) for lut, p in zip(luts, planes, strict=True))  # type: ignore[misc]
