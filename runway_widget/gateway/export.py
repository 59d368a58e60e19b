"""The session's clips as one zip, to keep or share after the workshop.

``clips/<job>-<participant>.mp4`` for each stored clip, and a manifest of them in two forms:
``clips.csv`` (a spreadsheet: cells that would run as a formula are made inert, as in the
report) and ``clips.json``. Each line names the file, the participant, the prompt and the
settings. Clips an admin hid from the gallery are left out unless asked for; a clip whose
file is gone from this machine is listed with no file. File names inside the zip are made
from participants' names but are always plain ASCII with no path in them.
"""

from __future__ import annotations

import json
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .web.report import inert_csv

__all__ = ["MANIFEST_COLUMNS", "Exported", "write_export"]

MANIFEST_COLUMNS = (
    "file",
    "participant",
    "prompt",
    "type",
    "model",
    "seconds",
    "ratio",
    "flip",
    "task_id",
    "finished_at",
    "hidden",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_CHARS = 40


@dataclass(frozen=True)
class Exported:
    """What went into the zip: clips with their video, and clips whose file was missing."""

    clips: int
    missing: int


def write_export(
    clips: Iterable[dict[str, Any]], out: IO[bytes], *, include_hidden: bool = False
) -> Exported:
    """Write the zip of ``clips`` (`ClipFeed.listing`'s rows) to ``out``."""
    lines: list[dict[str, Any]] = []
    missing = 0
    with zipfile.ZipFile(out, "w") as archive:
        for clip in reversed(list(clips)):  # oldest first, as the session went
            if clip["hidden"] and not include_hidden:
                continue
            path = Path(clip["video_path"] or "")
            name = f"clips/{clip['job']:05d}-{_slug(clip['participant'])}.mp4"
            if clip["video_path"] and path.is_file():
                archive.write(path, name, compress_type=zipfile.ZIP_STORED)
            else:
                name, missing = "", missing + 1
            lines.append(_line(clip, name))
        archive.writestr(
            "clips.csv", inert_csv(MANIFEST_COLUMNS, lines), compress_type=zipfile.ZIP_DEFLATED
        )
        archive.writestr(
            "clips.json",
            json.dumps(lines, ensure_ascii=False, indent=1),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    return Exported(len(lines) - missing, missing)


def _line(clip: dict[str, Any], file: str) -> dict[str, Any]:
    settings = dict(clip["settings"])
    return {
        "file": file,
        "participant": clip["participant"],
        "prompt": clip["prompt"],
        "type": settings.get("type", ""),
        "model": settings.get("model", ""),
        "seconds": settings.get("seconds", ""),
        "ratio": settings.get("ratio", ""),
        "flip": settings.get("flip", ""),
        "task_id": clip["task_id"],
        "finished_at": clip["finished_at"],
        "hidden": clip["hidden"],
    }


def _slug(name: str) -> str:
    """A participant's name as a safe piece of a file name (``Zoë K.`` -> ``Zoe-K.``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = _UNSAFE.sub("-", ascii_name).strip("-.")[:SLUG_CHARS]
    return slug or "participant"
