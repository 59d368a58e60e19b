"""Saving a file so that it is either whole or not there at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["save_atomically"]


def save_atomically(destination: Path, fill: Callable[[IO[bytes]], object]) -> None:
    """``fill`` a temporary file next to ``destination``, then rename it into place.

    The destination is the whole file or untouched, never half-written (a download cut off,
    a full disk, Ctrl-C); the temporary file is removed on any failure.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets, not videos
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
