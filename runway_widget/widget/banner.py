"""The message above the form, and which message each kind of failure gets.

`MESSAGES` maps an error class (by name, so an error added later to `runway_widget.errors`
needs no import here) to what the user reads: a title, a hint, and whether it is a warning
(something to check) or an error (nothing happened). The most specific class in the error's
MRO wins. An error's own `Hint` (what to do next) is worded here, by `HINTS`, for a panel and
for a dashboard, whose visitors have no command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..errors import Hint
from . import html, ui_updates
from .shared_models import SharedModels, is_shown, set_shown

if TYPE_CHECKING:
    from ..store import JobStore


@dataclass(frozen=True)
class Message:
    """What the banner says for one kind of failure."""

    title: str
    hint: str | Callable[[BaseException], str | None] | None = None
    warn: bool = False


def _retry_hint(exc: BaseException) -> str | None:
    retry_after = getattr(exc, "retry_after", None)
    return f"Retry in about {retry_after:.0f} s." if retry_after else None


MESSAGES: dict[str, Message] = {
    "ValidationError": Message("The service rejected the request"),
    "SubmissionUnknownError": Message("The request was sent but no answer came back", warn=True),
    "AuthenticationError": Message("The API key was refused or is missing"),
    "QuotaExceededError": Message(
        "Your workshop quota does not allow this job: nothing was sent",
        "Ask the instructor for more.",
        warn=True,
    ),
    "RateLimitError": Message("Too many requests: nothing was sent", _retry_hint, warn=True),
    "NetworkError": Message("Could not reach the service: nothing was sent"),
    "NoReplyError": Message("No answer came back from the service"),
    "ServerError": Message("The service had an error"),
    "RedirectError": Message(
        "The service answered with a redirect: the request was not sent again",
        "Check the base URL (APIFRAME_BASE_URL): it should be the API's own address.",
    ),
    "UnexpectedReplyError": Message(
        "The service's answer was not what was expected",
        "If the service accepted it, the job is in the APIFRAME dashboard; check before "
        "resubmitting.",
        warn=True,
    ),
    "ApiStatusError": Message("The service refused the request"),
    "ApiframeError": Message("Submitting failed"),
    "Exception": Message("Submitting failed unexpectedly"),
}
# A workshop gateway's quota refusal, by the part of the quota that ran out (its ``limit``).
QUOTA_MESSAGES = {
    "jobs": Message(
        "Your workshop quota is used up: nothing was sent",
        "Ask the instructor for more jobs: Generate works again once you have some "
        "(press Refresh).",
        warn=True,
    ),
    "credits": Message(
        "Not enough credits left in your workshop quota: nothing was sent",
        "A shorter clip may fit; or ask the instructor for more credits.",
        warn=True,
    ),
    "concurrent": Message(
        "As many of your jobs are running as your workshop quota allows: nothing was sent",
        "Wait for one of them to finish, then Generate again.",
        warn=True,
    ),
}
# A workshop gateway's refusals whose fix is not the one their error class suggests (a
# revoked token is no bad key; a provider that failed took nothing), by refusal code.
REFUSAL_MESSAGES = {
    "token_revoked": Message("Your workshop token was revoked"),
    "unauthorized": Message("The workshop gateway does not know your token"),
    "upstream_unavailable": Message(
        "The workshop's provider cannot be reached: nothing was sent", warn=True),
    "upstream_key_refused": Message(
        "The provider refused the workshop's key: nothing was sent", warn=True),
    "upstream_refused": Message("The provider refused the request: nothing was sent"),
}
# What to do next, by the error's `Hint`: (on a panel, on a dashboard). A submission's
# errors are the banner's only ones, so only their hints are here.
HINTS = {
    Hint.CHECK_HISTORY: (
        "The job may or may not exist (and may be charged). Check your job history "
        "(`runway-widget history`, or the APIFRAME dashboard) before resubmitting.",
        "The job may or may not exist (and may be charged). Ask the organiser to check the "
        "job history before resubmitting.",
    ),
}


def message_for(exc: BaseException) -> Message:
    """The message for a workshop gateway's refusal code, else the entry of `MESSAGES` for
    the most specific class of ``exc``."""
    refused = REFUSAL_MESSAGES.get(getattr(exc, "refusal", None) or "")
    if refused is not None:
        return refused
    for cls in type(exc).__mro__:
        if cls.__name__ == "QuotaExceededError":
            return QUOTA_MESSAGES.get(getattr(exc, "limit", None) or "", MESSAGES[cls.__name__])
        if cls.__name__ in MESSAGES:
            return MESSAGES[cls.__name__]
    return MESSAGES["Exception"]


def details_for(exc: BaseException, message: Message, *, dashboard: bool = False) -> list[str]:
    """The lines under the title: what went wrong, then what to do."""
    problems = getattr(exc, "problems", None)
    if isinstance(problems, list) and problems:
        lines = [str(p) for p in problems]
    elif type(exc).__module__.startswith("runway_widget"):
        lines = [getattr(exc, "detail", None) or str(exc)]
    else:
        lines = [f"{type(exc).__name__}: {exc}"]
    kind = getattr(exc, "hint", None)
    if isinstance(kind, Hint) and kind in HINTS:
        hint: str | None = HINTS[kind][1 if dashboard else 0]
    else:
        hint = message.hint(exc) if callable(message.hint) else message.hint
    if hint:
        lines.append(hint)
    return lines


class Banner(widgets.HBox):
    """A dismissable message box: a bold title and detail lines, all escaped."""

    def __init__(self, shared: SharedModels, *, dashboard: bool = False) -> None:
        self._dashboard = dashboard
        self._history_failures = 0
        self._text = shared.html_widget("", "rw-grow")
        self.close_button = shared.button_widget("", "rw-icon-button", icon="times",
                                                 tooltip="Dismiss")
        self.close_button.on_click(lambda _: self.hide())
        super().__init__([self._text, self.close_button], layout=shared.layout)
        self.add_class("rw-banner-row")
        set_shown(self, False)

    @property
    def markup(self) -> str:
        """The banner's markup ("" when hidden)."""
        return self._text.value

    @property
    def shown(self) -> bool:
        return is_shown(self)

    def show(self, title: str, details: list[str] | None = None, *, warn: bool = False) -> None:
        markup = html.banner(title, details, warn=warn)

        def update() -> None:
            self._text.value = markup
            set_shown(self, True)

        ui_updates.apply(update)

    def show_error(self, exc: BaseException) -> None:
        """The banner for a failure, from `MESSAGES`."""
        message = message_for(exc)
        self.show(message.title, details_for(exc, message, dashboard=self._dashboard),
                  warn=message.warn)

    def hide(self) -> None:
        def update() -> None:
            self._text.value = ""
            set_shown(self, False)

        ui_updates.apply(update)

    def warn_if_history_fails(self, store: JobStore) -> None:
        """Say so when a job could not be written to the history (once for each new
        failure): it still runs, but a restart would not list it."""
        if store.failed_writes <= self._history_failures:
            return
        self._history_failures = store.failed_writes
        self.show(
            "The job history is not being kept",
            [store.write_error or "a record could not be written",
             "Jobs still run and show here, but after a restart they will not be listed. "
             "Set RUNWAY_WIDGET_HOME to a writable folder."],
            warn=True,
        )
