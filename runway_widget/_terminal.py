"""Text from elsewhere made inert before it reaches a terminal.

A server's ``message``, ``status``, ``video_url`` or task_id, an error that quotes one, a
prompt read back from the history: printed raw, any of them could carry escape sequences
that recolour the screen, retitle the window, hide text, forge a hyperlink (OSC 8) or move
the cursor over earlier lines. `inert` removes every escape sequence whole (so no
parameters are left behind), then every other control character, C0 and C1 alike, and the
bidirectional overrides that reorder what is shown.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["inert", "inert_json"]

_SEQUENCES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]              # CSI: colours, cursor moves, erasing
    | (?:\x1b\]|\x9d) .*? (?:\x07|\x1b\\|\x9c|$)       # OSC: window titles, hyperlinks
    | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f]) .*? (?:\x1b\\|\x9c|$)   # DCS, SOS, PM, APC strings
    | \x1b [ -/]* [0-~]                                # any other escape sequence
    """,
    re.VERBOSE | re.DOTALL,
)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile("[\t\n]+")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(text: Any, *, multiline: bool = False) -> str:
    """``text`` (anything, as ``str``) without escape sequences or control characters.

    One line by default: newlines and tabs become spaces. ``multiline=True`` keeps them.
    """
    cleaned = _CONTROLS.sub("", _SEQUENCES.sub("", str(text)))
    return cleaned if multiline else _LINE_BREAKS.sub(" ", cleaned)


def inert_json(data: Any) -> str:
    """Indented JSON whose strings hold no raw control character (they are escaped).

    ``json`` already escapes C0 controls; C1 controls, DEL and bidirectional overrides
    would pass through ``ensure_ascii=False`` raw, so they are escaped here too.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
