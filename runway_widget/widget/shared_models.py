"""One ``Layout`` and a few ``Style`` models shared by all the widgets of one panel.

Every ipywidget brings its own layout model, and most a style model: three models for one
text field, each a message to the browser and an entry in a saved notebook. Sizes, spacing
and visibility come from the panel's CSS classes instead (`html.STYLE`), so the panel's
widgets can all point at the same few models. They belong to one panel (closing a panel
closes them), never to the module.
"""

from __future__ import annotations

from typing import TypeVar

import ipywidgets as widgets
from ipywidgets.widgets.widget_bool import CheckboxStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

W = TypeVar("W", bound=widgets.DOMWidget)
LABEL_WIDTH = "110px"


class SharedModels:
    """The layout and styles a panel's widgets share."""

    def __init__(self) -> None:
        self.layout = widgets.Layout()
        self.html = HTMLStyle()
        self.button = widgets.ButtonStyle()
        self.labelled = TextStyle(description_width=LABEL_WIDTH)
        self.toggles = widgets.ToggleButtonsStyle(description_width=LABEL_WIDTH,
                                                  button_width="auto")
        self.checkbox = CheckboxStyle(description_width="0px")

    def html_widget(self, value: str = "", *classes: str) -> widgets.HTML:
        """An ``HTML`` widget on the shared models, with CSS classes."""
        return _classed(widgets.HTML(value, layout=self.layout, style=self.html), classes)

    def button_widget(self, description: str = "", *classes: str, **kwargs: object
                      ) -> widgets.Button:
        return _classed(widgets.Button(description=description, layout=self.layout,
                                       style=self.button, **kwargs), classes)

    def box(self, children: list[widgets.Widget], *classes: str,
            kind: type[widgets.Box] = widgets.Box) -> widgets.Box:
        """A flex box; its direction and wrapping come from ``classes``."""
        return _classed(kind(children, layout=self.layout), classes)

    def close(self) -> None:
        for model in (self.layout, self.html, self.button, self.labelled, self.toggles,
                      self.checkbox):
            model.close()


def _classed(widget: W, classes: tuple[str, ...]) -> W:
    for cls in classes:
        widget.add_class(cls)
    return widget


def set_shown(widget: widgets.DOMWidget, shown: bool) -> None:
    """Show or hide a widget through its CSS class (its layout is shared)."""
    if shown:
        widget.remove_class("rw-hidden")
    else:
        widget.add_class("rw-hidden")


def is_shown(widget: widgets.DOMWidget) -> bool:
    return "rw-hidden" not in widget._dom_classes
