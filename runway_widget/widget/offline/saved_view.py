"""The panel's second output: its static summary, kept current while the kernel lives.

Displaying a panel makes two outputs: the widget, and the summary (`summary.summary_html`)
with a ``display_id``. When jobs change, `SavedView.changed` (safe from any thread) schedules
one ``update_display`` a moment later, so a burst of finishes costs one message. Frontends
replace every output with that id (JupyterLab routes the update to the cell that displayed
it, even after the cell finished), so the notebook saved at any time holds a current list.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger("runway_widget.widget")

UPDATE_DELAY = 1.0  # seconds: changes within this window go out as one update

Render = Callable[[], tuple[str, str]]


class _Timer(Protocol):
    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], _Timer]


def _daemon_timer(delay: float, action: Callable[[], None]) -> _Timer:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.name = "runway-widget-summary"
    return timer


def _in_ipython() -> bool:
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    return InteractiveShell.initialized()


class SavedView:
    """Shows the summary output and replaces it, at most once per `UPDATE_DELAY`.

    ``render`` returns ``(html, text)`` for the current jobs; it runs on the timer's thread
    (it may read poster files), never while a lock of this object is held.
    """

    def __init__(
        self,
        render: Render,
        *,
        delay: float = UPDATE_DELAY,
        timer: TimerFactory = _daemon_timer,
    ) -> None:
        self.display_id = f"runway-widget-summary-{uuid.uuid4().hex}"
        self._render = render
        self._delay = delay
        self._make_timer = timer
        self._lock = threading.Lock()
        self._pending: _Timer | None = None
        self._shown = False
        self._closed = False
        self.updates = 0

    def bundle(self) -> dict[str, Any]:
        markup, text = self._render()
        return {"text/html": markup, "text/plain": text}

    def show(self) -> None:
        """Display the summary below the widget (kernel thread, when the panel is shown)."""
        from IPython.display import display

        display(self.bundle(), raw=True, display_id=self.display_id)
        with self._lock:
            self._shown = True

    def changed(self) -> None:
        """Something shown in the summary changed (any thread): update it soon."""
        with self._lock:
            if not self._shown or self._closed or self._pending is not None:
                return
            self._pending = timer = self._make_timer(self._delay, self.flush)
        timer.start()

    def flush(self) -> None:
        """Replace the displayed summary now."""
        with self._lock:
            self._pending = None
            if not self._shown:
                return
        try:
            bundle = self.bundle()
        except Exception:
            logger.exception("could not build the panel's summary")
            return
        if not _in_ipython():
            return
        from IPython.display import update_display

        update_display(bundle, raw=True, display_id=self.display_id)
        self.updates += 1

    def close(self) -> None:
        """Stop updating after one last, current summary."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        self.flush()
