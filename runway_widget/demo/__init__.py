"""The embedded demo backend: the same HTTP API as the real service, rendering real clips.

It renders with PyAV, numpy and Pillow, which install with the package; without them (an
install that skipped dependencies) importing it says what to install.

``shared_demo_server()`` gives the one server a process uses for demo mode: started on first
use, stopped when the interpreter exits.
"""

from __future__ import annotations

import atexit
import threading

try:
    import av  # noqa: F401
    import numpy  # noqa: F401
    import PIL  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "the demo backend needs PyAV, numpy and Pillow, which come with runway_widget: "
        "pip install av numpy Pillow",
        name=exc.name,
    ) from exc

from .server import DEMO_API_KEY, DemoFaults, DemoServer, job_seconds_from_env

__all__ = [
    "DEMO_API_KEY",
    "DemoFaults",
    "DemoServer",
    "job_seconds_from_env",
    "shared_demo_server",
]

_shared_lock = threading.Lock()
_shared: DemoServer | None = None


def shared_demo_server() -> DemoServer:
    """The process-wide demo server, started lazily (thread-safe) and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.is_running:
            first = _shared is None
            _shared = DemoServer().start()
            if first:
                atexit.register(_stop_shared)
        return _shared


def _stop_shared() -> None:
    with _shared_lock:
        if _shared is not None:
            _shared.stop()
