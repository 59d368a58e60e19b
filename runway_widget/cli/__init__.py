"""The ``runway-widget`` command."""

from .commands import main

__all__ = ["main"]
