"""The notebook panel: a form, live job views and inline players (ipywidgets, one anywidget)."""

from __future__ import annotations

from .form import GenerationForm
from .job_view import JobView
from .panel import RunwayPanel

__all__ = ["GenerationForm", "JobView", "RunwayPanel"]
