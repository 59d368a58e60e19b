"""Building the panel's HTML safely.

Every string that reaches an ``HTML`` widget comes from a user or a server, and the widget
puts it into the page as markup. So everything goes through `esc`, and only http(s) URLs
(`runway_widget.models.is_http_url`) ever become a ``src`` or ``href``. Colours are JupyterLab
CSS variables, so the panel follows the light and dark themes.
"""

from __future__ import annotations

import html

from ..models import is_http_url

STYLE = """<style>
.rw-panel { color: var(--jp-ui-font-color1); }
.rw-card { border: 1px solid var(--jp-border-color2); border-radius: 6px;
  background: var(--jp-layout-color1); }
.rw-section { border-top: 1px solid var(--jp-border-color2); }
.rw-title { font-size: var(--jp-content-font-size2, 1.1em); font-weight: 600; }
.rw-muted { color: var(--jp-ui-font-color2); font-size: var(--jp-ui-font-size0, 0.9em); }
.rw-mono { font-family: var(--jp-code-font-family); font-size: var(--jp-code-font-size); }
.rw-prompt { font-weight: 600; color: var(--jp-ui-font-color1); overflow-wrap: anywhere; }
.rw-badge { display: inline-block; padding: 0 6px; border-radius: 4px;
  border: 1px solid var(--jp-border-color2); background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1); font-size: var(--jp-ui-font-size0, 0.9em); }
.rw-badge-demo { border-color: var(--jp-warn-color1); color: var(--jp-warn-color1);
  font-weight: 700; }
.rw-badge-live { border-color: var(--jp-brand-color1); color: var(--jp-brand-color1); }
.rw-error { color: var(--jp-error-color1); }
.rw-ok { color: var(--jp-success-color1); }
.rw-banner { padding: 6px 10px; border-radius: 4px; border-left: 4px solid var(--jp-error-color1);
  background: var(--jp-layout-color2); color: var(--jp-ui-font-color1); }
.rw-banner-warn { border-left-color: var(--jp-warn-color1); }
.rw-banner ul, .rw-problems ul { margin: 2px 0 0 0; padding-left: 20px; }
.rw-problems { color: var(--jp-error-color1); }
.rw-code { margin: 0; padding: 8px; white-space: pre; overflow-x: auto; border-radius: 4px;
  background: var(--jp-layout-color2); color: var(--jp-content-font-color1);
  border: 1px solid var(--jp-border-color2);
  font-family: var(--jp-code-font-family); font-size: var(--jp-code-font-size); }
.rw-link a { color: var(--jp-content-link-color, var(--jp-brand-color1)); }
.rw-media video, .rw-media img { max-width: 100%; border-radius: 4px;
  background: var(--jp-layout-color2); }
</style>"""


def esc(value: object) -> str:
    """HTML-escape anything for text and for attribute values (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


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
    """An escaped ``<ul>``."""
    return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"


def banner(title: str, details: list[str] | None = None, *, warn: bool = False) -> str:
    """A message box above the form: a bold title and optional detail lines, all escaped."""
    cls = "rw-banner rw-banner-warn" if warn else "rw-banner"
    body = f"<b>{esc(title)}</b>"
    if details:
        body += bullet_list(details) if len(details) > 1 else f"<div>{esc(details[0])}</div>"
    return f'<div class="{cls}">{body}</div>'


def code_block(code: str) -> str:
    """Escaped source in a ``<pre>``."""
    return f'<pre class="rw-code">{esc(code)}</pre>'
