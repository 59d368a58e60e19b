"""Images for ``/upload``: what kind they are, and whether they may be sent at all."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from ..errors import ValidationError
from ..models import UPLOAD_LIMIT, Problem

__all__ = ["prepare_upload", "sniff_image"]

_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
)


def sniff_image(data: bytes) -> tuple[str | None, str]:
    """The content type and file suffix of PNG, JPEG, GIF or WebP bytes; ``(None, "")`` else."""
    for signature, content_type, suffix in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return content_type, suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None, ""


def prepare_upload(image: str | os.PathLike[str] | bytes) -> tuple[str, bytes, str]:
    """``(file name, bytes, content type)`` of a path or bytes; `ValidationError` if unfit.

    Checked before anything is sent: the file exists, is not empty, and is at most 2 MB.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        name = "image"
    else:
        path = Path(image).expanduser()
        if not path.is_file():
            raise ValidationError([Problem("image", f"no such image file: {path}")])
        if path.stat().st_size > UPLOAD_LIMIT:
            raise ValidationError([_too_big(path.stat().st_size)])
        data = path.read_bytes()
        name = path.name
    if not data:
        raise ValidationError([Problem("image", "the image is empty")])
    if len(data) > UPLOAD_LIMIT:
        raise ValidationError([_too_big(len(data))])
    content_type, suffix = sniff_image(data)
    if name == "image":
        name += suffix
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return name, data, content_type


def _too_big(size: int) -> Problem:
    limit = f"{UPLOAD_LIMIT:,} bytes (2 MB)"
    return Problem("image", f"the image is {size:,} bytes; the upload limit is {limit}")
