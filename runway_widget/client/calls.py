"""The one path every API call of a client takes.

The key is checked before anything is sent, a read takes a token from the client's request
budget, the `Session` sends it (retries, deadline, cap), a failed reply becomes an
`ApiframeError` in which no secret appears, and a good one is parsed. The client's methods
and its `BatchFetcher` call `ApiCalls.call` and nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from .._http.deadlines import DeadlinePassed
from .._http.replies import status_error, transport_error, unusable_reply
from .._http.session import ReplyTooLarge, Session
from .._http.transport import TransportError
from .._secrets import Redactor, key_problem, mask_secret, normalize_secret
from ..errors import ApiframeError, AuthenticationError
from .budget import RequestBudget

__all__ = ["ApiCalls", "usable_key"]

logger = logging.getLogger("runway_widget.client")

T = TypeVar("T")


def usable_key(api_key: str | None) -> str:
    """The key to send, or an `AuthenticationError` (before anything is sent)."""
    if not api_key:
        raise AuthenticationError(
            "no API key: set APIFRAME_API_KEY or pass api_key=…; in a workshop, join it "
            "first (`runway-widget join URL CODE`); or try the demo backend: "
            "ApiframeClient.demo()"
        )
    problem = key_problem(api_key)
    if problem is not None:
        raise AuthenticationError(problem)
    return api_key


class ApiCalls:
    """One client's calls to its API: its key, its budget, its session and its deadlines."""

    def __init__(
        self,
        session: Session,
        base_url: str,
        api_key: str | None,
        *,
        deadline: float,
        budget: RequestBudget,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.deadline = deadline
        self.budget = budget
        self.key = api_key

    @property
    def key(self) -> str | None:
        """The key, stripped of surrounding whitespace (a key read from a file ends in "\\n")."""
        return self._key

    @key.setter
    def key(self, value: str | None) -> None:
        self._key = normalize_secret(value)
        self.redact = Redactor([value, self._key])

    def call(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], T],
        policy: str = "read",
        take_token: bool = False,
        task_ids: Sequence[str] = (),
        secrets: Iterable[str | None] = (),
        deadline: float | None = None,
        **body: Any,
    ) -> T:
        """Send one request to ``path``, map any failure to an error, ``parse`` the JSON reply.

        ``take_token``: draw from the budget first (reads; a caller that paces itself does
        not). ``task_ids``: the ids asked about, named by a `TaskNotFoundError`.
        ``secrets``: more text to scrub from errors (a webhook secret in the body).
        """
        key = usable_key(self.key)
        if take_token:
            self.budget.acquire()
        redact = Redactor([self.key, *secrets]) if secrets else self.redact
        url = self.base_url + path
        submission = policy == "submit"
        try:
            reply = self.session.call(
                method,
                url,
                policy=policy,
                deadline=self.deadline if deadline is None else deadline,
                headers={"Authorization": key},
                **body,
            )
        except (TransportError, DeadlinePassed, ReplyTooLarge) as exc:
            raise transport_error(exc, url, redact=redact, submission=submission) from None
        logger.debug("%s %s -> HTTP %s", method, redact(url), reply.status)
        if not 200 <= reply.status < 300:
            raise status_error(
                reply,
                url,
                redact=redact,
                key_mask=mask_secret(key),
                task_ids=task_ids,
                submission=submission,
            )
        try:
            return parse(json.loads(redact(reply.text)))  # a key echoed anywhere is masked
        except (ValueError, TypeError, KeyError, RecursionError, ApiframeError):
            raise unusable_reply(reply, url, redact=redact, submission=submission) from None
