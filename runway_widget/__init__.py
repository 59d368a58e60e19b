"""Generate Runway videos from a Jupyter notebook.

Importing the package is light: the client, tracker, panel and demo backend load
on first use, and nothing starts a thread or a server until asked.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (  # light: every error is importable from the package root
    ApiframeError,
    ApiStatusError,
    AuthenticationError,
    BadRequestError,
    KeyRefusedError,
    NetworkError,
    NoReplyError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    ServerError,
    SubmissionUnknownError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnexpectedReplyError,
    ValidationError,
)

__all__ = [
    "ApiStatusError",
    "ApiframeClient",
    "ApiframeError",
    "AuthenticationError",
    "BadRequestError",
    "DemoServer",
    "GenerationRequest",
    "JobStore",
    "KeyRefusedError",
    "NetworkError",
    "NoReplyError",
    "QuotaExceededError",
    "RateLimitError",
    "RedirectError",
    "RunwayPanel",
    "ServerError",
    "SubmissionUnknownError",
    "Task",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskTimeoutError",
    "TaskTracker",
    "UnexpectedReplyError",
    "ValidationError",
    "WebhookReceiver",
    "__version__",
]

_LAZY = {
    "ApiframeClient": "runway_widget.client",
    "GenerationRequest": "runway_widget.models",
    "Task": "runway_widget.models",
    "TaskTracker": "runway_widget.tracking",
    "JobStore": "runway_widget.store",
    "WebhookReceiver": "runway_widget.tracking",
    "RunwayPanel": "runway_widget.widget",
    "DemoServer": "runway_widget.demo",
}

if TYPE_CHECKING:
    from .client import ApiframeClient
    from .demo import DemoServer
    from .models import GenerationRequest, Task
    from .store import JobStore
    from .tracking import TaskTracker, WebhookReceiver
    from .widget import RunwayPanel


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'runway_widget' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


logger = logging.getLogger("runway_widget")
logger.addHandler(logging.NullHandler())
_level = os.environ.get("RUNWAY_WIDGET_LOG", "").upper()
if isinstance(logging.getLevelName(_level), int):  # e.g. RUNWAY_WIDGET_LOG=debug
    # Only this package's logger: the host program's own logging stays as it configured it.
    _stderr = logging.StreamHandler()
    _stderr.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    logger.addHandler(_stderr)
    logger.setLevel(_level)
