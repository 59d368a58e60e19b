"""The one way the panel's widgets change after they are built, from any thread.

Widgets are created on the kernel's main thread only (construction, a click, `attach`).
Later changes come from four kinds of thread — the kernel, the tracker's poller, webhook
connections and the panel's background work — and all of them go through `apply`, which runs
an update under one lock (so two threads never interleave the messages of one widget) and
batches each widget's changes into one message.

With ``RUNWAY_WIDGET_LOG=debug`` (or `check_threads`), the contract is enforced: creating a
widget of this package off the main thread, or changing one from another thread outside
`apply`, raises `ThreadContractError` and is kept in `violations`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ipywidgets as widgets

logger = logging.getLogger("runway_widget.widget")

_lock = threading.RLock()
_local = threading.local()
_checking = False
_violations: list[str] = []
_threads: set[str] = set()
_PACKAGE = "runway_widget.widget"


class ThreadContractError(AssertionError):
    """A widget was built off the kernel thread, or changed off the one update path."""


def on_kernel_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def apply(update: Callable[[], object]) -> None:
    """Run ``update`` (which sets widget values) safely from any thread."""
    with _lock:
        if _checking:
            _threads.add(threading.current_thread().name)
        depth = getattr(_local, "depth", 0)
        _local.depth = depth + 1
        try:
            update()
        finally:
            _local.depth = depth


def set_values(widget: widgets.Widget, **values: Any) -> None:
    """Set several traits of one widget as one message, through `apply`."""

    def update() -> None:
        with widget.hold_sync():
            for name, value in values.items():
                setattr(widget, name, value)

    apply(update)


def in_update() -> bool:
    """True inside `apply` on this thread."""
    return getattr(_local, "depth", 0) > 0


# ----- the debug checks ----------------------------------------------------------------------


def check_threads(enabled: bool = True) -> None:
    """Turn the thread-contract checks on (or off) for widgets built from now on."""
    global _checking
    _install()
    _checking = enabled


def violations() -> list[str]:
    """What broke the contract since the checks were turned on (newest last)."""
    with _lock:
        return list(_violations)


def clear_violations() -> None:
    """Forget the violations and the updating threads seen so far."""
    with _lock:
        _violations.clear()
        _threads.clear()


def updating_threads() -> set[str]:
    """The names of the threads that went through `apply` while the checks were on."""
    with _lock:
        return set(_threads)


@contextlib.contextmanager
def checked() -> Iterator[list[str]]:
    """Checks on for a block; yields the list of violations seen in it (tests)."""
    global _checking
    _install()
    before, _checking = _checking, True
    clear_violations()
    seen: list[str] = []
    try:
        yield seen
    finally:
        _checking = before
        seen.extend(violations())


def _built_by_package() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_PACKAGE) and not frame.f_globals[
            "__name__"
        ].endswith("ui_updates"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _violation(text: str) -> None:
    with _lock:
        _violations.append(text)
    logger.error("thread contract: %s", text)
    raise ThreadContractError(text)


def _on_change(change: dict[str, Any]) -> None:
    if not _checking or on_kernel_thread() or in_update() or change["name"] == "comm":
        return  # (a widget closed by the garbage collector, on whatever thread ran it)
    owner = type(change["owner"]).__name__
    _violation(
        f"{owner}.{change['name']} set from thread {threading.current_thread().name} "
        "outside ui_updates.apply"
    )


_chained: list[Callable[[widgets.Widget], object]] = []


def _install() -> None:
    """Hook widget construction once, keeping any hook installed before."""
    with _lock:
        if _chained:
            return
        previous = widgets.Widget._widget_construction_callback
        _chained.append(previous if callable(previous) else lambda _widget: None)
        widgets.Widget.on_widget_constructed(_on_constructed)


def _on_constructed(widget: widgets.Widget) -> None:
    _chained[0](widget)
    if not _checking or not _built_by_package():
        return
    if not on_kernel_thread():
        _violation(
            f"{type(widget).__name__} built on thread {threading.current_thread().name}"
        )
    widget.observe(_on_change)


if os.environ.get("RUNWAY_WIDGET_LOG", "").strip().lower() == "debug":
    check_threads(True)
