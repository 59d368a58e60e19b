"""Where the command line saves a clip: checked before a job is paid, never over a file by surprise.

`check_output` runs before anything is submitted, so a typo in ``--out`` costs nothing.
`free_name` picks a name next to a file that appeared while the job ran, and
`fallback_folder` is where a clip goes when its destination refuses it after all (a full
disk, a folder removed meanwhile): a paid clip is kept somewhere, and the user is told where.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["DestinationError", "check_output", "fallback_folder", "free_name"]


class DestinationError(Exception):
    """The destination cannot take the clip; the message says why and what to do."""


def check_output(out: str | None, *, force: bool = False) -> Path | None:
    """The ``--out`` file, checked now: a file name (not a folder) in a writable folder.

    An existing file is refused unless ``force``. None (no ``--out``) checks that the
    working directory, where the default name goes, is writable.
    """
    if out is None:
        _check_writable(Path.cwd())
        return None
    target = Path(out).expanduser()
    if target.is_dir():
        raise DestinationError(
            f"--out {out} is a folder: name the file, e.g. --out {target / 'clip.mp4'}"
        )
    if target.exists() and not target.is_file():
        raise DestinationError(f"--out {out} exists and is not a regular file")
    if target.exists() and not force:
        raise DestinationError(
            f"{out} already exists: choose another --out, or add --force to replace it"
        )
    _check_writable(_nearest_existing_folder(target))
    return target


def free_name(target: Path) -> Path:
    """``target`` if nothing is there, else ``name-1.mp4``, ``name-2.mp4``… beside it."""
    candidate, number = target, 0
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    return candidate


def fallback_folder(preferred: Path) -> Path:
    """``preferred`` (the history's folder) if a file can be written there, else the temp dir."""
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        _check_writable(preferred)
        return preferred
    except (OSError, DestinationError):
        return Path(tempfile.gettempdir())


def _nearest_existing_folder(target: Path) -> Path:
    """The deepest existing ancestor of ``target``, which must be a folder."""
    for ancestor in target.absolute().parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DestinationError(
                    f"cannot save to {target}: {ancestor} is a file, not a folder"
                )
            return ancestor
    raise DestinationError(f"cannot save to {target}: no folder of it exists")


def _check_writable(folder: Path) -> None:
    """Create and remove a file there: the only test that is right for root and odd mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".runway-widget-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DestinationError(f"cannot write in {folder}: {reason}") from None
