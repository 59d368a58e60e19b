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

How the summary and the widget share a cell, in CSS only (no script, so it also works from
a saved file): `SUMMARY_STYLE`, inside the summary, hides the widget output of the same cell
while that output has no content ("Loading widget...", or "Error displaying widget: model not
found" when the kernel never ran the cell): the summary says it better. `LIVE_PANEL_STYLE`,
in the live panel's style, hides the summary while the panel shows, and shows
`KERNEL_GONE_LINE` when ipywidgets marks the panel ``jupyter-widgets-disconnected`` (its
comm is dead: restored from saved widget state, or the kernel restarted).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ...models import is_http_url
from .. import html

__all__ = [
    "KERNEL_GONE_LINE",
    "LIVE_PANEL_STYLE",
    "SUMMARY_CLASS",
    "SummaryRow",
    "summary_html",
    "summary_text",
]

SUMMARY_CLASS = "rw-summary"
PROMPT_LIMIT = 200
POSTER_BOX = (160, 90)
_DATA_IMAGE = re.compile(r"data:image/(jpeg|png);base64,[A-Za-z0-9+/]+={0,2}")

# Text colours with at least 4.5:1 contrast on white, and on JupyterLab's dark theme (set by
# the style with !important, since they are inline for renderers that drop style elements).
_TONES = {"muted": ("#595959", "#bdbdbd"), "ok": ("#1b5e20", "#81c784"),
          "error": ("#b71c1c", "#ef9a9a"), "warn": ("#8a4b00", "#ffb74d")}
_STATUS_TONES = {"finished": "ok", "failed": "error", "running": "warn"}

# The widget renderer (a lumino Panel) writes its "Loading widget..." and error texts straight
# into the output node; a rendered widget is a child element. (``:has`` cannot nest, so the
# rule hides the output node, not its whole row.)
SUMMARY_STYLE = (
    "<style>.jp-OutputArea:has(.rw-summary) .jp-OutputArea-output.lm-Panel:not(:has(*))"
    " { display: none; }\n"
    # the widget output's empty text (nbconvert, a reader without widgets) takes no line
    ".jp-OutputArea:has(.rw-summary) .jp-OutputArea-child:has(> [data-mime-type='text/plain']"
    " > pre:empty) { display: none; }\n"
    + "".join(f'body[data-jp-theme-light="false"] .rw-summary .rw-s-{name} '
              f"{{ color: {dark} !important; }}\n" for name, (_light, dark) in _TONES.items())
    + "</style>"
)
KERNEL_GONE_CLASS = "rw-kernel-gone"
KERNEL_GONE_LINE = (
    f'<div class="{KERNEL_GONE_CLASS}" role="status">This panel\'s kernel is gone: run the cell '
    "again to use it (what it made is listed as it was saved).</div>"
)
LIVE_PANEL_STYLE = (
    ".jp-OutputArea:has(.rw-panel) > .jp-OutputArea-child:has(.rw-summary) { display: none; }\n"
    f".rw-panel .{KERNEL_GONE_CLASS} {{ display: none; }}\n"
    # One line says it; not a broken-link icon beside every part of the panel.
    ".rw-panel.jupyter-widgets-disconnected::before,"
    " .rw-panel .jupyter-widgets-disconnected::before { display: none; }\n"
    f".rw-panel.jupyter-widgets-disconnected .{KERNEL_GONE_CLASS} {{ display: block;"
    " padding: 4px 8px; border-left: 4px solid var(--jp-warn-color1, #a04000);"
    " background: var(--jp-layout-color2, #eee); color: var(--jp-ui-font-color1, #000); }\n"
)



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


def _tone(name: str) -> str:
    """Class and inline colour for a tone of `_TONES`."""
    return f'class="rw-s-{name}" style="color:{_TONES[name][0]}"'


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
            f'background:#8883;border-radius:4px"><span {_tone("muted")}>{html.esc(label)}'
            "</span></div>")


def _row_html(row: SummaryRow) -> str:
    tone = _tone(_STATUS_TONES.get(row.status, "muted"))
    prompt = html.truncate(row.prompt or "(prompt unknown)", PROMPT_LIMIT)
    details = [
        f'<div style="font-weight:600">{html.esc(prompt)}</div>',
        f'<div {_tone("muted")}>{html.esc(row.options)}</div>',
        f'<div><b {tone}>{html.esc(_status_text(row))}</b> <span {_tone("muted")}>· '
        f"{html.esc(_when(row.submitted_at))} · task <code>{html.esc(row.task_id)}</code>"
        "</span></div>",
    ]
    where = _where(row)
    if where:
        details.append(f"<div>{where}</div>")
    # An inline background: JupyterLab's zebra stripes would make one row look selected.
    return (f'<tr style="background:none"><td style="padding:4px 10px 4px 0;vertical-align:top">'
            f'{_poster_cell(row)}'
            f'</td><td style="padding:4px 0;vertical-align:top;text-align:left">'
            f'{"".join(details)}</td></tr>')


def summary_html(rows: Sequence[SummaryRow], *, backend: str, saved_at: float | None = None
                 ) -> str:
    """The summary as escaped HTML: a heading line, then one row per job, newest first."""
    moment = time.time() if saved_at is None else saved_at
    heading = (
        f"<b>Runway video</b> · {html.esc(backend)} · {html.esc(_counts(rows))} "
        f"<span {_tone('muted')}>(as of {html.esc(_when(moment))})</span><br>"
        f"<span {_tone('muted')}>A saved view of this panel: run the cell to use the live "
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
