"""The notebook panel: a form, live job cards and inline players (pure ipywidgets)."""

from __future__ import annotations

from .form import GenerationForm
from .job_card import JobCard
from .panel import RunwayPanel

__all__ = ["GenerationForm", "JobCard", "RunwayPanel"]
