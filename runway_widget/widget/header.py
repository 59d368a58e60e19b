"""The panel's first line: which backend, the credits left, how many jobs run, Refresh.

The credits come from ``/account``, which can hang on a bad server: they load in the
backend's account lane, never on the kernel thread and never in the lane that carries videos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import ipywidgets as widgets

from ..errors import ApiframeError, plural
from . import html, ui_updates
from .background import account_lane
from .job import CHECKING, FAILED, FINISHED, RUNNING
from .offline.summary import KERNEL_GONE_LINE, LIVE_PANEL_STYLE
from .shared_models import SharedModels

if TYPE_CHECKING:
    from ..client.apiframe import ApiframeClient

QUOTA_USED_UP = "No jobs left in your workshop quota: ask the instructor for more, then press " \
    "Refresh."
DEMO_TITLE = "A local demo backend: no API key, no credits, generated test clips"


def backend_badge(client: ApiframeClient) -> str:
    """The DEMO badge (with the demo's address as a hover title), the workshop and whose
    seat it is, or the live host."""
    if client.is_demo:
        return (
            f'<span class="rw-badge rw-badge-demo" title="{html.esc(DEMO_TITLE)}">DEMO</span> '
            + html.span("local demo backend, no key needed", "rw-muted rw-demo-address",
                        title=f"Serving at {client.base_url} in the kernel")
        )
    title = f"the workshop gateway at {client.base_url}" if client.is_workshop \
        else client.base_url
    return html.span(backend_label(client), "rw-badge rw-badge-live", title=title)


def backend_label(client: ApiframeClient) -> str:
    """``DEMO``, ``workshop · alice`` (a workshop gateway) or the backend's host."""
    if client.is_demo:
        return "DEMO"
    if client.is_workshop:
        return f"workshop · {client.participant}" if client.participant else "workshop"
    return urlsplit(client.base_url).netloc or client.base_url


def counts_text(states: Iterable[str]) -> str:
    """``2 running · 5 finished · 1 failed`` (failed only when there are some), then
    ``checking 3 jobs…`` for jobs from the history the backend has not spoken of yet."""
    states = list(states)
    parts = [f"{states.count(RUNNING)} running", f"{states.count(FINISHED)} finished"]
    if states.count(FAILED):
        parts.append(f"{states.count(FAILED)} failed")
    if states.count(CHECKING):
        parts.append(f"checking {plural(states.count(CHECKING), 'job')}…")
    return " · ".join(parts)


class Header(widgets.HBox):
    """Title, backend badge, credits, job counts and the Refresh button."""

    def __init__(self, client: ApiframeClient, on_refresh: Callable[[], object],
                 shared: SharedModels,
                 on_account: Callable[[dict[str, Any]], object] | None = None) -> None:
        self._client = client
        self._on_account = on_account
        self.backend_label = backend_label(client)
        self.title = shared.html_widget(_title_markup(client), "rw-grow")
        self.credits = shared.html_widget(html.span("credits: …", "rw-muted"))
        self.counts = shared.html_widget(html.span(counts_text([]), "rw-muted"))
        self.refresh_button = shared.button_widget(
            "Refresh", icon="refresh",
            tooltip="Poll every job and the credits now (use this on Colab)")
        self.refresh_button.on_click(lambda _: on_refresh())
        super().__init__([self.title, self.credits, self.counts, self.refresh_button],
                         layout=shared.layout)
        self.add_class("rw-header")

    def show_counts(self, states: Iterable[str]) -> None:
        ui_updates.set_values(self.counts, value=html.span(counts_text(states), "rw-muted"))

    def refresh_credits(self, *, wait: bool = False) -> None:
        """Ask the account for its credits (in the account lane unless ``wait``)."""
        if wait:
            self._load_credits()
        else:
            account_lane(self._client.base_url).submit(("credits", id(self)), self._load_credits)

    def _load_credits(self) -> None:
        try:
            info = self._client.account()
        except ApiframeError as exc:
            markup = html.span(f"credits unavailable: {exc}", "rw-error")
        else:
            plan = info.get("plan")
            markup = html.span(account_text(info), "rw-badge",
                               title=f"plan: {plan}" if plan else None)
            self._show_backend()
            if self._on_account is not None:
                self._on_account(info)
        ui_updates.set_values(self.credits, value=markup)

    def _show_backend(self) -> None:
        """Turn the badge to DEMO once the account revealed a hand-built demo client."""
        if self.backend_label != backend_label(self._client):
            self.backend_label = backend_label(self._client)
            ui_updates.set_values(self.title, value=_title_markup(self._client))


def _title_markup(client: ApiframeClient) -> str:
    return (f"{html.STYLE}<style>{LIVE_PANEL_STYLE}</style>"
            + html.span("Runway video", "rw-title") + " " + backend_badge(client)
            + KERNEL_GONE_LINE)


def account_text(info: dict[str, Any]) -> str:
    """``1,200 credits``; through a workshop gateway, whose quota and what is left of it."""
    credits = info.get("credits")
    credit_text = f"{credits:,} credits" if isinstance(credits, int) else f"credits: {credits}"
    if "jobs_left" not in info:
        return credit_text
    jobs = info["jobs_left"]
    left = [
        "unlimited jobs" if jobs is None else f"{jobs} job{'' if jobs == 1 else 's'}",
        "unlimited credits" if credits is None else credit_text,
    ]
    owner = f"{info['email']}'s" if info.get("email") else "your"
    return f"{owner} quota: {' · '.join(left)} left"


def quota_used_up(info: dict[str, Any]) -> str | None:
    """What to tell a workshop participant whose account has no job or credit left (None:
    something is left, or the account has no quota)."""
    if info.get("plan") != "workshop":
        return None
    if info.get("jobs_left") == 0:
        return QUOTA_USED_UP
    if info.get("credits") == 0:
        return "No credits left in your workshop quota: ask the instructor for more, then " \
            "press Refresh."
    return None
