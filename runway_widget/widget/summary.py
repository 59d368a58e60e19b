"""The panel's static summary: what it made, readable without a kernel.

A saved notebook is opened by GitHub, nbviewer, ``nbconvert --to html`` or a JupyterLab
whose kernel never ran the cell: none of them can show the live widget. Next to the widget
the panel displays this summary (``text/html`` and ``text/plain``) and replaces it as jobs
change, so the saved file always lists every job with its prompt, settings, status, a poster
frame and where the clip is.

Pure functions of plain rows. Everything from users and servers is escaped; a poster is only
ever an inline ``data:image/jpeg`` or ``data:image/png`` URI or an http(s) URL, a link only
http(s). The markup sizes images with attributes and lays out with a table, so it reads well
where a renderer strips styles.

Two CSS rules travel with it: `SUMMARY_STYLE` (inside the summary) hides JupyterLab's
"Error displaying widget: model not found" line in the same cell, since the summary says it
better; `HIDE_WHEN_LIVE` (in the live panel's style) hides the summary while the widget shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..models import is_http_url
from . import html

__all__ = ["HIDE_WHEN_LIVE", "SUMMARY_CLASS", "SummaryRow", "summary_html", "summary_text"]

SUMMARY_CLASS = "rw-summary"
PROMPT_LIMIT = 200
POSTER_BOX = (160, 90)
_DATA_IMAGE = re.compile(r"data:image/(jpeg|png);base64,[A-Za-z0-9+/]+={0,2}")

# The widget renderer puts its error text straight into the output node, with no child
# element; a live or loading widget never looks like that.
SUMMARY_STYLE = (
    "<style>.jp-OutputArea:has(.rw-summary) > .jp-OutputArea-child:has("
    "> .jp-OutputArea-output.jupyter-widgets:not(:has(*))) { display: none; }</style>"
)
HIDE_WHEN_LIVE = (
    ".jp-OutputArea:has(.rw-panel) > .jp-OutputArea-child:has(.rw-summary) { display: none; }"
)

_STATUS_COLOURS = {"finished": "#1a7f37", "failed": "#c62828", "running": "#8a5a00"}


@dataclass(frozen=True)
class SummaryRow:
    """One job as the summary shows it; ``poster`` is a data: URI or an http(s) URL."""

    task_id: str
    prompt: str
    options: str
    status: str  # running, finished or failed
    submitted_at: float
    percentage: float | None = None
    message: str | None = None
    local_path: str | None = None
    video_link: str | None = None
    poster: str | None = None


def is_safe_image_source(value: object) -> bool:
    """Only inline JPEG/PNG data or an http(s) URL may become an ``<img src>``."""
    if not isinstance(value, str):
        return False
    return bool(_DATA_IMAGE.fullmatch(value)) or is_http_url(value)


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


def _counts(rows: Sequence[SummaryRow]) -> str:
    states = [row.status for row in rows]
    parts = [f"{states.count(name)} {name}" for name in ("running", "finished", "failed")
             if states.count(name)]
    return ", ".join(parts) or "no jobs yet"


def _status_text(row: SummaryRow) -> str:
    if row.status == "running":
        pct = f", {row.percentage:.0f}%" if row.percentage else ""
        return f"running when saved{pct}"
    if row.status == "failed":
        return f"failed: {row.message or 'the service gave no reason'}"
    return "finished"


def _where(row: SummaryRow) -> str:
    parts = []
    if row.local_path:
        parts.append("clip: " + html.span(row.local_path, "rw-mono"))
    if is_http_url(row.video_link):
        parts.append(html.link(row.video_link, "open video ↗"))
    return " · ".join(parts)


def _poster_cell(row: SummaryRow) -> str:
    width, height = POSTER_BOX
    box = f"width:{width}px;height:{height}px;"
    if is_safe_image_source(row.poster):
        alt = html.esc("poster frame: " + html.truncate(row.prompt or row.task_id, 80))
        return (f'<img src="{html.esc(row.poster)}" alt="{alt}" width="{width}" '
                f'style="{box}object-fit:contain;background:#222;border-radius:4px">')
    label = {"running": "running", "failed": "failed"}.get(row.status, "no preview")
    return (f'<div style="{box}display:flex;align-items:center;justify-content:center;'
            f'background:#8883;border-radius:4px;color:#555">{html.esc(label)}</div>')


def _row_html(row: SummaryRow) -> str:
    colour = _STATUS_COLOURS.get(row.status, "#555")
    prompt = html.truncate(row.prompt or "(prompt unknown)", PROMPT_LIMIT)
    details = [
        f'<div style="font-weight:600">{html.esc(prompt)}</div>',
        f'<div style="color:#555">{html.esc(row.options)}</div>',
        f'<div><span style="color:{colour};font-weight:600">{html.esc(_status_text(row))}'
        f'</span> <span style="color:#555">· {html.esc(_when(row.submitted_at))} · task '
        f'<code>{html.esc(row.task_id)}</code></span></div>',
    ]
    where = _where(row)
    if where:
        details.append(f"<div>{where}</div>")
    return (f'<tr><td style="padding:4px 10px 4px 0;vertical-align:top">{_poster_cell(row)}'
            f'</td><td style="padding:4px 0;vertical-align:top;text-align:left">'
            f'{"".join(details)}</td></tr>')


def summary_html(rows: Sequence[SummaryRow], *, backend: str, saved_at: float | None = None
                 ) -> str:
    """The summary as escaped HTML: a heading line, then one row per job, newest first."""
    moment = time.time() if saved_at is None else saved_at
    heading = (
        f"<b>Runway video</b> · {html.esc(backend)} · {html.esc(_counts(rows))} "
        f'<span style="color:#555">(as of {html.esc(_when(moment))})</span><br>'
        '<span style="color:#555">A saved view of this panel: run the cell to use the live '
        "panel again.</span>"
    )
    table = ""
    if rows:
        table = ('<table style="border-collapse:collapse;margin-top:6px">'
                 + "".join(_row_html(row) for row in rows) + "</table>")
    return (f'{SUMMARY_STYLE}<div class="{SUMMARY_CLASS}" style="max-width:900px">'
            f"<div>{heading}</div>{table}</div>")


def summary_text(rows: Sequence[SummaryRow], *, backend: str) -> str:
    """The same summary as plain text (terminals, renderers that show no HTML)."""
    lines = [f"Runway video panel · {backend} · {_counts(rows)} "
             "(saved view: run the cell to use the live panel)"]
    for row in rows:
        where = row.local_path or (row.video_link if is_http_url(row.video_link) else "")
        tail = f" · {where}" if where else ""
        lines.append(f"  [{_status_text(row)}] {html.truncate(row.prompt or '?', 70)!r} · "
                     f"{row.options} · task {row.task_id}{tail}")
    return "\n".join(lines)
