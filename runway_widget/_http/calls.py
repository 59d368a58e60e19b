"""One call to the API: the key check, the request, a failed reply as an error, the JSON.

The client decides what to call and how often; this module makes sure a call either
returns parsed data or raises an `ApiframeError` in which no secret appears.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests

from .._secrets import Redactor, key_problem, mask_secret
from ..errors import ApiframeError, AuthenticationError
from .deadlines import DeadlinePassed
from .replies import status_error, transport_error, unusable_reply
from .transport import ReplyTooLarge, Transport

__all__ = ["call_api", "usable_key"]

logger = logging.getLogger("runway_widget.client.apiframe")

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


def call_api(
    transport: Transport,
    method: str,
    url: str,
    *,
    key: str,
    parse: Callable[[Any], T],
    redact: Redactor,
    timeout: float,
    deadline: float,
    policy: str,
    task_ids: Sequence[str] = (),
    **body: Any,
) -> T:
    """Send one request with ``key``, map any failure to an error, ``parse`` the JSON reply."""
    submission = policy == "submit"
    try:
        reply = transport.call(
            method, url, policy=policy, deadline=deadline, headers={"Authorization": key}, **body
        )
    except (requests.RequestException, DeadlinePassed, ReplyTooLarge) as exc:
        raise transport_error(
            exc, url, redact=redact, timeout=timeout, submission=submission
        ) from None
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
