"""Problems with the form, shown in place: under their field, and all of them in one list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import ipywidgets as widgets

from ..models import Problem
from . import html
from .shared_models import SharedModels, set_shown


class FieldProblems:
    """The error line under each field that has one, and the "Nothing was sent" summary."""

    def __init__(self, fields: Iterable[str], shared: SharedModels) -> None:
        self.lines: dict[str, widgets.HTML] = {
            name: shared.html_widget("", "rw-field-error", "rw-hidden") for name in fields
        }
        self.summary = shared.html_widget("", "rw-hidden")
        self._problems: list[Problem] = []

    @property
    def messages(self) -> list[str]:
        return [p.message for p in self._problems]

    def __bool__(self) -> bool:
        return bool(self._problems)

    def concern(self, *fields: str) -> bool:
        """Whether any problem shown is about one of ``fields``."""
        return any(p.field in fields for p in self._problems)

    def show(self, problems: Sequence[Problem | str]) -> None:
        """Show every problem at once: under its field when it has one, and in the list."""
        self._problems = [p if isinstance(p, Problem) else Problem(None, str(p))
                          for p in problems]
        for name in self.lines:
            self.set_line(name, None)
        for problem in self._problems:
            if problem.field in self.lines:
                self.set_line(problem.field, problem.message)
        self._render_summary()

    def clear(self, name: str) -> None:
        """The field ``name`` changed: its problems are gone."""
        if not self.concern(name):
            return
        self._problems = [p for p in self._problems if p.field != name]
        self.set_line(name, None)
        self._render_summary()

    def set_line(self, name: str, message: str | None, *, muted: bool = False) -> None:
        """The line under ``name`` (None hides it); also used for upload progress."""
        line = self.lines.get(name)
        if line is None:
            return
        line.value = html.span(message, "rw-muted" if muted else "rw-error") if message else ""
        set_shown(line, bool(message))

    def _render_summary(self) -> None:
        if not self._problems:
            self.summary.value = ""
            set_shown(self.summary, False)
            return
        n = len(self._problems)
        title = "fix this first" if n == 1 else f"fix these {n} problems"
        body = html.bullet_list(self.messages)
        self.summary.value = (f'<div class="rw-problems"><b>Nothing was sent: '
                              f"{html.esc(title)}</b>{body}</div>")
        set_shown(self.summary, True)
