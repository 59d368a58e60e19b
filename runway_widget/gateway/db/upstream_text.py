"""The boundary between what the upstream sends and what the gateway's database stores.

Everything in a provider's reply is data, not trust. JSON can carry a lone surrogate
(``"\\ud83c"``), which no database encodes; PostgreSQL refuses NUL characters and strings
longer than a ``VARCHAR``; a megabyte of message would be stored and served to a
participant on every fetch. So, before a task update reaches the ledger:

- every text is made valid Unicode (a lone surrogate becomes U+FFFD), loses its control
  characters and bidirectional overrides (tabs and line breaks become spaces) and is cut
  to its column's length;
- a ``video_url`` is kept only when it is an http(s) URL of a sane length, as it came:
  a URL is never repaired, since a changed URL points somewhere else;
- a task id that could not be stored exactly is not one of ours (ours were stored as the
  upstream gave them), so its update is dropped.
"""

from __future__ import annotations

import dataclasses
import re

from ...errors import shorten
from ...models import Task, is_http_url
from .database import jobs

__all__ = [
    "MESSAGE_LIMIT",
    "URL_LIMIT",
    "plain_text",
    "storable_id",
    "storable_task",
    "storable_url",
    "valid_unicode",
]

MESSAGE_LIMIT = 2000  # enough for any real error; a participant reads it on every fetch
URL_LIMIT = 4096  # signed CDN URLs run to a couple of thousand characters
STATUS_LIMIT: int = jobs.c.status.type.length  # type: ignore[attr-defined]
TASK_ID_LIMIT: int = jobs.c.task_id.type.length  # type: ignore[attr-defined]

# C0 and C1 controls, DEL, and the bidirectional controls that reorder what is shown
_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_SPACES = re.compile("[\t\n\r]+")
_SURROGATES = re.compile("[\ud800-\udfff]")


def valid_unicode(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (a proper pair is joined)."""
    if not _SURROGATES.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def plain_text(value: object, limit: int) -> str | None:
    """``value`` as one line of valid Unicode, without control characters, at most ``limit``
    characters (cut with "…"); None when nothing is left."""
    if value is None:
        return None
    text = valid_unicode(value if isinstance(value, str) else str(value))
    text = _CONTROLS.sub("", _SPACES.sub(" ", text)).strip()
    return shorten(text, limit) if text else None


def storable_url(value: object) -> str | None:
    """An http(s) URL kept exactly as it came, or None (another scheme, too long, not text)."""
    if not isinstance(value, str) or len(value) > URL_LIMIT or not is_http_url(value):
        return None
    if _CONTROLS.search(value) or _SURROGATES.search(value):
        return None
    return value


def storable_id(value: object) -> bool:
    """True when ``value`` can be stored and looked up exactly as it is (a task id)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= TASK_ID_LIMIT
        and value.isprintable()  # no control, format, surrogate or separator character
    )


def storable_task(task: Task) -> Task | None:
    """The update as the ledger may store it, or None when its id cannot be one of ours."""
    if not storable_id(task.task_id):
        return None
    return dataclasses.replace(
        task,
        status=plain_text(task.status, STATUS_LIMIT) or "unknown",
        message=plain_text(task.message, MESSAGE_LIMIT),
        video_url=storable_url(task.video_url),
    )
