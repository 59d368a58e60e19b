"""Closing composite widgets completely.

``Widget.close()`` closes one model only: its children, its ``layout`` and ``style`` models
and any pre-built widget not currently shown stay open in the kernel (and in a saved
notebook's widget state). The panel's parts close through `close_tree`.
"""

from __future__ import annotations

from collections.abc import Iterable

import ipywidgets as widgets


def close_tree(widget: widgets.Widget, extra: Iterable[widgets.Widget] = ()) -> None:
    """Close ``widget``, its children (recursively), ``extra`` widgets, layouts and styles."""
    for child in (*getattr(widget, "children", ()), *extra):
        close_tree(child)
        child.close()
    for part in ("layout", "style"):
        model = getattr(widget, part, None)
        if isinstance(model, widgets.Widget):
            model.close()
