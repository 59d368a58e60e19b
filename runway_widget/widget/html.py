"""Building the panel's HTML safely.

Every string that reaches an ``HTML`` widget comes from a user or a server, and the widget
puts it into the page as markup. So everything goes through `esc`, and only http(s) URLs
(`runway_widget.models.is_http_url`) ever become a ``src`` or ``href``. Colours are JupyterLab
CSS variables, so the panel follows the light and dark themes.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from ..models import is_http_url

STATIC = Path(__file__).parent / "static"
_QUOTED_COMMAND = re.compile(r"`([^`<>]+)`")
# The panel's style, sent once with its header (the job views share it).
STYLE = "<style>\n{}{}</style>".format(
    (STATIC / "panel.css").read_text(encoding="utf-8"),
    (STATIC / "job_view.css").read_text(encoding="utf-8"),
)


def esc(value: object) -> str:
    """HTML-escape anything for text and for attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def prose(value: object) -> str:
    """Escaped text whose `quoted commands` (messages quote them in backticks, as a terminal
    shows them) become ``<code>``: a page shows no literal backticks."""
    return _QUOTED_COMMAND.sub(r"<code>\1</code>", esc(value))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis; whitespace runs collapsed."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def span(text: object, cls: str = "", title: str | None = None) -> str:
    """An escaped ``<span>``, optionally with a class and an (escaped) hover title."""
    attrs = f' class="{esc(cls)}"' if cls else ""
    if title is not None:
        attrs += f' title="{esc(title)}"'
    return f"<span{attrs}>{esc(text)}</span>"


def link(url: str | None, text: str) -> str:
    """A link that opens in a new tab, or just the escaped text when ``url`` is not http(s)."""
    if not is_http_url(url):
        return esc(text)
    return (
        f'<span class="rw-link"><a href="{esc(url)}" target="_blank" '
        f'rel="noopener noreferrer">{esc(text)}</a></span>'
    )


def video_tag(url: str | None, *, max_height: str = "420px", muted: bool = False) -> str:
    """An HTML5 player on a remote http(s) URL; anything else gets a note and no ``src``."""
    if not is_http_url(url):
        return span(f"no playable video URL: {truncate(str(url), 80)}", "rw-error")
    extra = " muted" if muted else ""
    return (
        f'<div class="rw-media"><video controls preload="metadata"{extra} src="{esc(url)}" '
        f'style="max-height: {esc(max_height)}"></video></div>'
    )


def image_tag(url: str | None, *, max_height: str = "120px") -> str:
    """A thumbnail on a remote http(s) URL; anything else gets a note and no ``src``."""
    if not is_http_url(url):
        return span("not an http(s) URL", "rw-error")
    return (
        f'<div class="rw-media"><img src="{esc(url)}" alt="preview" '
        f'style="max-height: {esc(max_height)}"></div>'
    )


def bullet_list(items: list[str]) -> str:
    """An escaped ``<ul>`` (quoted commands as code)."""
    return "<ul>" + "".join(f"<li>{prose(item)}</li>" for item in items) + "</ul>"


def banner(title: str, details: list[str] | None = None, *, warn: bool = False) -> str:
    """A message box above the form: a bold title and optional detail lines, all escaped."""
    cls = "rw-banner rw-banner-warn" if warn else "rw-banner"
    body = f"<b>{esc(title)}</b>"
    if details:
        body += bullet_list(details) if len(details) > 1 else f"<div>{prose(details[0])}</div>"
    return f'<div class="{cls}">{body}</div>'
