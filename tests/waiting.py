"""The tests' one wait for something another thread (or process) does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 60.0


def wait_for(predicate: Callable[[], Any], what: str = "", timeout: float = TIMEOUT) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate!r}")
        time.sleep(0.01)
