"""The workshop report in the formats instructors take away: CSV (a spreadsheet) and JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REPORT_COLUMNS", "report_csv"]

REPORT_COLUMNS = (
    "name",
    "revoked",
    "jobs_used",
    "jobs_limit",
    "credits_used",
    "credits_limit",
    "running",
    "finished",
    "failed",
    "refused",
    "unknown",
)


def report_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """One header line, then one line per participant (limits left empty mean unlimited)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in REPORT_COLUMNS])
    return out.getvalue()
