"""How fast the demo backend renders: seconds of video per wall-clock second.

For each generation type and each aspect ratio, renders a 5 s clip (best of ``--repeat``
runs, so a busy machine disturbs the figure less) and prints the speed, its ratio to real
time, and the CPU time spent per second of video (all threads; on an idle 2-core machine the
wall speed approaches 2 / that figure). The goal is at least 8x real time on 2 cores for every
type.

    python benchmarks/render_speed.py [--repeat 3] [--duration 5]

image2video and video2video follow their input's aspect, so for them the inputs are made in
each aspect ratio first (an image, and a clip rendered from it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from runway_widget.demo.inputs import InputLoader
from runway_widget.demo.renderer import X264_OPTIONS, RenderSpec, render, size_for_ratio
from runway_widget.models import ASPECT_RATIOS, GENERATION_TYPES

GOAL = 8.0


def make_inputs(folder: Path) -> dict[str, Path]:
    """A photo-like image per aspect ratio (smooth gradients plus fine noise) and a clip."""
    files: dict[str, Path] = {}
    rng = np.random.default_rng(1)
    for ratio in ASPECT_RATIOS:
        width, height = size_for_ratio(ratio)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        rgb = np.stack(
            [
                120 + 90 * np.sin(xx / 70),
                110 + 80 * np.cos(yy / 50),
                140 + 60 * np.sin((xx + yy) / 90),
            ],
            axis=-1,
        ) + rng.normal(0, 6, (height, width, 3))
        tag = ratio.replace(":", "x")
        image = folder / f"image-{tag}.png"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(image)
        files[f"http://inputs/{image.name}"] = image
        clip = folder / f"clip-{tag}.mp4"
        render(
            RenderSpec("image2video", "input", image_url=f"http://inputs/{image.name}"),
            clip,
            InputLoader(files.get, folder),
        )
        files[f"http://inputs/{clip.name}"] = clip
    return files


def spec_for(kind: str, ratio: str, duration: int) -> RenderSpec:
    tag = ratio.replace(":", "x")
    prompt = "a lighthouse in a storm, waves crashing on the rocks"
    if kind == "text2video":
        return RenderSpec(kind, prompt, aspect_ratio=ratio, duration=duration)
    if kind == "image2video":
        return RenderSpec(
            kind,
            prompt,
            image_url=f"http://inputs/image-{tag}.png",
            end_image_url=f"http://inputs/image-{tag}.png",
            duration=duration,
        )
    return RenderSpec(kind, prompt, video_url=f"http://inputs/clip-{tag}.mp4", duration=duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--duration", type=int, default=5, choices=(5, 10))
    args = parser.parse_args()

    print(f"x264 options: {X264_OPTIONS}; CPUs: {os.cpu_count()}; best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = make_inputs(folder)
        inputs = InputLoader(files.get, folder)
        print(
            f"{'type':<12} {'aspect':<6} {'size':>9} {'wall s':>7} {'video s / wall s':>17}"
            f" {'CPU s / video s':>16} {'MB':>6}"
        )
        per_type: dict[str, list[float]] = {}
        for kind in GENERATION_TYPES:
            for ratio in ASPECT_RATIOS:
                spec = spec_for(kind, ratio, args.duration)
                out = folder / "out.mp4"
                best, cpu = float("inf"), float("inf")
                for _ in range(args.repeat):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    render(spec, out, inputs)
                    best = min(best, time.perf_counter() - started)
                    cpu = min(cpu, time.process_time() - cpu_started)
                speed = spec.duration / best
                per_type.setdefault(kind, []).append(speed)
                width, height = _size(out)
                print(
                    f"{kind:<12} {ratio:<6} {width:>4}x{height:<4} {best:>7.2f} "
                    f"{speed:>8.1f} = {speed:4.1f}x {cpu / spec.duration:>16.3f} "
                    f"{out.stat().st_size / 1e6:>6.2f}"
                )
        print()
        for kind, speeds in per_type.items():
            worst = min(speeds)
            verdict = "ok" if worst >= GOAL else f"below the {GOAL:g}x goal"
            print(
                f"{kind:<12} median {statistics.median(speeds):5.1f}x real time, "
                f"slowest {worst:5.1f}x ({verdict})"
            )


def _size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


if __name__ == "__main__":
    main()
