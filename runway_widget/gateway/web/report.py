"""The workshop report in the formats instructors take away: CSV (a spreadsheet) and JSON.

Names in it are chosen by participants. A spreadsheet reads a cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return (or their full-width forms, which some
spreadsheets take alike) as a formula, and a formula can fetch URLs or run commands: such a
text cell is written with a leading ``'``, as OWASP's guidance on CSV injection says; the
``csv`` module quotes whatever needs quoting. Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "REPORT_COLUMNS",
    "inert_cell",
    "inert_csv",
    "limit_text",
    "over_quota_text",
    "quota_text",
    "report_csv",
]

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
    "over_jobs",
    "over_credits",
    "over_concurrent",
    "queued",
    "cancelled",
)
OVER_QUOTA = {"over_jobs": "jobs", "over_credits": "credits", "over_concurrent": "concurrent"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def inert_cell(value: Any) -> Any:
    """A cell no spreadsheet evaluates: text starting like a formula gets a leading ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def report_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """One header line, then one line per participant (limits left empty mean unlimited)."""
    return inert_csv(REPORT_COLUMNS, rows)


def inert_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """``columns`` as the header, then each row's cells in that order, made `inert_cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([inert_cell(row[c]) for c in columns])
    return out.getvalue()


def limit_text(value: int | None) -> str:
    """A limit as people read it: the number, or ∞ for none."""
    return "∞" if value is None else str(value)


def quota_text(row: Mapping[str, Any]) -> str:
    """``jobs 2/5, credits 10/50, 2 at once``: use against limits."""
    return (
        f"jobs {row['jobs_used']}/{limit_text(row['jobs_limit'])}, "
        f"credits {row['credits_used']}/{limit_text(row['credits_limit'])}, "
        f"{limit_text(row['concurrent_limit'])} at once"
    )


def over_quota_text(row: Mapping[str, Any]) -> str:
    """How often each limit refused this participant (``jobs ×3``), "" if never."""
    return ", ".join(f"{label} ×{row[key]}" for key, label in OVER_QUOTA.items() if row.get(key))
