"""What Generate does: check the form, send the request once, and say what happened.

One submission at a time: a click that arrives while one is in flight, or a repeat of the
same request a moment after it was sent (a double click queued behind the first), does
nothing and the form says so next to Generate.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ApiframeError, ValidationError
from ..models import GenerationRequest, Problem
from .banner import Banner
from .form import GenerationForm
from .job import Job

if TYPE_CHECKING:
    from ..client.apiframe import ApiframeClient

logger = logging.getLogger("runway_widget.widget")

# A second Generate click that reaches the kernel this soon after an identical submit was
# queued behind the first one (the button was not yet disabled in the browser): ignore it.
REPEAT_CLICK_WINDOW = 1.0


class Submitter:
    """Sends the form's request (or a job's, to try again); ``on_sent(job)`` shows it."""

    def __init__(self, client: ApiframeClient, form: GenerationForm, banner: Banner,
                 on_sent: Callable[[Job], object],
                 on_refused: Callable[[ApiframeError], object] | None = None) -> None:
        self._client = client
        self._form = form
        self._banner = banner
        self._on_sent = on_sent
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self._last_sent: tuple[float, dict[str, Any]] | None = None

    def click(self) -> None:
        """The Generate button: like `submit`, but a repeated click is ignored (and said so)."""
        payload = self._form.request().public_payload()
        last = self._last_sent
        if last is not None and time.monotonic() - last[0] < REPEAT_CLICK_WINDOW \
                and last[1] == payload:
            self._form.say_ignored("the same job was sent a moment ago")
            return
        with contextlib.suppress(ValidationError):  # shown in place by submit()
            self.submit()

    def submit(self) -> Job | None:
        """Send the form's request; see `RunwayPanel.submit`."""
        if not self._lock.acquire(blocking=False):
            self._form.say_ignored("a job is being sent already")
            return None
        try:
            job = self._send(self._form.request())
            if job is not None:
                self._form.forget_secret()
            return job
        finally:
            self._lock.release()

    def retry(self, request: GenerationRequest | None) -> None:
        """Send ``request`` again (a failed job's Try again)."""
        if request is None or not self._lock.acquire(blocking=False):
            return
        try:
            with contextlib.suppress(ValidationError):  # shown in place
                self._send(request)
        finally:
            self._lock.release()

    def _send(self, request: GenerationRequest) -> Job | None:
        self._banner.hide()
        problems = request.problems()
        if problems:
            self._form.show_problems(problems)
            raise ValidationError(problems)
        self._form.clear_problems()
        self._form.set_busy(True)
        try:
            task_id = self._client.imagine(request)
        except ValidationError as exc:
            self._form.show_problems(
                [Problem(f, m) for f, m in zip(exc.fields, exc.problems, strict=False)]
            )
            self._banner.show_error(exc)
            raise
        except Exception as exc:  # a click handler's traceback would be invisible
            if not isinstance(exc, ApiframeError):
                logger.exception("submit failed")
            self._banner.show_error(exc)
            if isinstance(exc, ApiframeError) and self._on_refused is not None:
                self._on_refused(exc)
            return None
        finally:
            self._form.set_busy(False)
        self._last_sent = (time.monotonic(), request.public_payload())
        job = Job(task_id, request, backend=self._client.base_url)
        self._on_sent(job)
        return job
