"""A class list in, personal join codes out: the files of ``gateway roster import``.

In: a CSV file with a ``name`` column (any case; other columns are ignored), or one name a
line with no header. Blank lines are skipped. Out: ``name,code,join`` lines, the last the
command each participant types (cells that a spreadsheet would run as a formula are made
inert, as in the report).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .web.report import inert_csv

__all__ = ["MAX_NAMES", "RosterFileError", "codes_csv", "read_names"]

MAX_NAMES = 2000
MAX_BYTES = 1024 * 1024


class RosterFileError(ValueError):
    """The class list cannot be read; the message says why."""


def read_names(path: Path) -> list[str]:
    """The names in the class list at ``path``, in file order."""
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as exc:
        raise RosterFileError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise RosterFileError(f"{path} is larger than {MAX_BYTES // 1024} KB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterFileError(f"{path} is not UTF-8 text (save it as CSV UTF-8)") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    column = header.index("name") if "name" in header else None
    if column is not None:
        rows = rows[1:]
    names = [row[column or 0].strip() for row in rows if len(row) > (column or 0)]
    names = [name for name in names if name]
    if not names:
        raise RosterFileError(f"{path} has no names (a 'name' column, or one name a line)")
    if len(names) > MAX_NAMES:
        raise RosterFileError(f"{path} has more than {MAX_NAMES} names")
    return names


def codes_csv(made: list[tuple[str, str]], url: str | None) -> str:
    """``name,code,join`` for each ``(name, code)``, the command with ``url`` (or ``URL``)."""
    base = url.rstrip("/") if url else "URL"
    lines = [
        {"name": name, "code": code, "join": f"runway-widget join {base} {code}"}
        for name, code in made
    ]
    return inert_csv(("name", "code", "join"), lines)
