"""From what happened on the wire to the `ApiframeError` a caller sees.

Two families, as in `runway_widget.errors`: no usable reply (`transport_error`), and a
reply that says no (`status_error`, `unusable_reply`). Every text that came from elsewhere
(a server's message, a library's complaint) passes through the client's `Redactor` and is
cut short, so no secret and no flood of echoed input reaches a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from .._secrets import Redactor
from ..errors import (
    ApiframeError,
    BadRequestError,
    CancelRefusedError,
    Hint,
    KeyRefusedError,
    NetworkError,
    QuotaExceededError,
    RateLimitError,
    RedirectError,
    ServerError,
    SubmissionUnknownError,
    TaskNotFoundError,
    UnexpectedReplyError,
    shorten,
)
from ..models import RefusalCode
from .deadlines import DeadlinePassed
from .retries import parse_retry_after
from .session import Reply, ReplyTooLarge, UnwantedStatus
from .transport import TransportError

__all__ = [
    "download_error",
    "error_messages",
    "refusal_code",
    "status_error",
    "transport_error",
    "unusable_reply",
]

_CODE = re.compile(r"[a-z_]{1,64}")  # what a refusal code looks like; anything else is dropped
EXCERPT_CHARS = 160
MESSAGE_CHARS = 300  # each server message, as quoted in an error
# A 400 that is really "no such task" ("Invalid task_id", "Task not found", ...).
_UNKNOWN_TASK = re.compile(r"\btask", re.IGNORECASE)
_UNKNOWN_WORDS = re.compile(
    r"\b(invalid|unknown|not found|no such|does ?n[o']?t exist|not exist)", re.IGNORECASE
)


def status_error(
    reply: Reply,
    url: str,
    *,
    redact: Redactor,
    key_mask: str,
    task_ids: Sequence[str] = (),
    submission: bool = False,
) -> ApiframeError:
    """The error for a reply whose status is not 2xx, with the gateway's refusal code."""
    error = _status_error(reply, url, redact=redact, key_mask=key_mask, task_ids=task_ids,
                          submission=submission)
    if error.refusal is None:
        error.refusal = refusal_code(error.body)
    return error


def refusal_code(body: Any) -> str | None:
    """The ``code`` of a workshop gateway's first error, or None."""
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    code = first.get("code") if isinstance(first, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


def _status_error(
    reply: Reply,
    url: str,
    *,
    redact: Redactor,
    key_mask: str,
    task_ids: Sequence[str],
    submission: bool,
) -> ApiframeError:
    status = reply.status
    body = _body(reply, redact)
    messages = error_messages(body)
    detail = "; ".join(messages) if messages else _excerpt(reply, redact) or "(empty reply)"
    path = urlsplit(url).path
    if 300 <= status < 400:
        return _redirect(reply, url, redact)
    if task_ids and (status == 404 or (status == 400 and _names_unknown_task(messages))):
        return TaskNotFoundError(_named_id(task_ids, messages), status_code=status, body=body)
    coded = _coded_error(body, status, detail, messages, submission=submission)
    if coded is not None:
        return coded
    if status == 400:
        return BadRequestError(messages or [detail], status_code=status, body=body)
    if status in (401, 403):
        return KeyRefusedError(
            f"the API key {key_mask} was refused (HTTP {status}: {shorten(detail)}): "
            "check APIFRAME_API_KEY or pass api_key=…",
            status_code=status,
            body=body,
        )
    retry_after = parse_retry_after(reply.headers.get("Retry-After"))
    if status == 429:
        hint = f"; the server asks to wait {retry_after:g}s" if retry_after is not None else ""
        return RateLimitError(
            f"too many requests to {path} (HTTP 429), still after retrying{hint}",
            retry_after=retry_after,
            status_code=status,
            body=body,
        )
    if status >= 500:
        ambiguous = submission and status != 503
        return ServerError(
            f"the server failed on {path} (HTTP {status}): {detail}",
            hint=Hint.CHECK_HISTORY if ambiguous else None,
            retry_after=retry_after,
            status_code=status,
            body=body,
        )
    return UnexpectedReplyError(
        f"unexpected reply from {path} (HTTP {status}): {detail}", status_code=status, body=body
    )


def unusable_reply(reply: Reply, url: str, *, redact: Redactor, submission: bool) -> ApiframeError:
    """A 2xx reply that is not the JSON expected."""
    message = (
        f"unexpected reply from {urlsplit(url).path} (HTTP {reply.status}): "
        f"{_excerpt(reply, redact) or '(empty body)'!r}"
    )
    body = _body(reply, redact)
    if submission:
        return SubmissionUnknownError(
            message, hint=Hint.CHECK_HISTORY, status_code=reply.status, body=body
        )
    return UnexpectedReplyError(message, status_code=reply.status, body=body)


def transport_error(
    exc: BaseException,
    url: str,
    *,
    redact: Redactor,
    submission: bool,
) -> ApiframeError:
    """The error for a call that got no usable reply: refused, reset, too slow, too large."""
    where = redact(shorten(url, 200))
    if isinstance(exc, ReplyTooLarge) and not submission:
        return UnexpectedReplyError(f"the reply from {where} was refused: {exc}")
    text = redact(_described(exc))
    if submission and not _certainly_not_sent(exc):
        return SubmissionUnknownError(
            f"no answer to the submission to {where} ({text})", hint=Hint.CHECK_HISTORY
        )
    return NetworkError(f"could not reach {where}: {text}")


def download_error(exc: BaseException, url: str, *, redact: Redactor) -> ApiframeError:
    """The error for a download that failed: refused, too large, too slow, cut off."""
    where = redact(shorten(url, 200))
    if isinstance(exc, UnwantedStatus):
        message = f"could not download {where}: HTTP {exc.status}"
        return UnexpectedReplyError(message, status_code=exc.status)
    if isinstance(exc, ReplyTooLarge):
        return UnexpectedReplyError(f"the video at {where} is too large: {exc} (download_limit)")
    detail = redact(_described(exc))
    return NetworkError(f"the download of {where} failed: {detail}")


def _coded_error(
    body: Any, status: int, detail: str, messages: list[str], *, submission: bool
) -> ApiframeError | None:
    """The error a workshop gateway's refusal code means where the status alone would mislead
    (a quota's 403 is not a bad key; a revoked token is not an unknown one); else None."""
    quota = refusal(body, RefusalCode.QUOTA_EXCEEDED)
    if quota is not None:
        limit = quota.get("limit")
        return QuotaExceededError(
            f"the workshop gateway refused the job: {detail} (nothing was submitted)",
            limit=limit if isinstance(limit, str) else None,
            status_code=status,
            body=body,
            refusal=RefusalCode.QUOTA_EXCEEDED.value,
        )
    if refusal(body, RefusalCode.TOKEN_REVOKED) is not None:
        return KeyRefusedError(
            "the instructor revoked your workshop token: ask them to restore it",
            status_code=status, body=body, refusal=RefusalCode.TOKEN_REVOKED.value,
        )
    if refusal(body, RefusalCode.UNAUTHORIZED) is not None:
        return KeyRefusedError(
            "the workshop gateway does not know this token: join the workshop again "
            "(the join line on the board), or ask the instructor",
            status_code=status, body=body, refusal=RefusalCode.UNAUTHORIZED.value,
        )
    if submission and refusal(body, RefusalCode.SUBMISSION_UNKNOWN) is not None:
        return SubmissionUnknownError(
            f"the workshop gateway got no answer from its upstream (HTTP {status})",
            hint=Hint.CHECK_HISTORY,
            status_code=status, body=body, refusal=RefusalCode.SUBMISSION_UNKNOWN.value,
        )
    for code, says in _UPSTREAM_FAILURES.items():
        if refusal(body, code) is not None:
            untouched = "; nothing was submitted and your quota is untouched" if submission else ""
            return ServerError(says + untouched, status_code=status, body=body,
                               refusal=code.value)
    if refusal(body, RefusalCode.UPSTREAM_REFUSED) is not None:  # its message says what
        return ServerError(detail, status_code=status, body=body,
                           refusal=RefusalCode.UPSTREAM_REFUSED.value)
    if refusal(body, RefusalCode.INVALID_REQUEST) is not None:
        return BadRequestError(messages or [detail], status_code=status, body=body)
    if refusal(body, RefusalCode.ALREADY_SENT) is not None:
        return CancelRefusedError(
            f"the job cannot be cancelled: {detail}", status_code=status, body=body
        )
    return None


# a gateway's refusals when its upstream failed: nothing was submitted (its quota given back)
_UPSTREAM_FAILURES = {
    RefusalCode.UPSTREAM_UNAVAILABLE: "the workshop gateway cannot reach its provider right now: "
    "try again in a moment",
    RefusalCode.UPSTREAM_KEY_REFUSED: "the provider refused the workshop's key: tell the "
    "instructor",
}


def refusal(body: Any, code: RefusalCode) -> dict[str, Any] | None:
    """The first error of ``body`` carrying ``code`` (a gateway's refusal reason), or None."""
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("code") == code.value:
            return error
    return None


def error_messages(body: Any) -> list[str]:
    """The ``msg`` of each entry of ``{"errors": [{"msg": ...}]}``, or [] for another shape."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    messages = [e.get("msg") if isinstance(e, dict) else e for e in errors[:20]]
    return [shorten(m, MESSAGE_CHARS) for m in messages if m]


def _names_unknown_task(messages: list[str]) -> bool:
    return any(_UNKNOWN_TASK.search(m) and _UNKNOWN_WORDS.search(m) for m in messages)


def _named_id(task_ids: Sequence[str], messages: list[str]) -> str:
    """The id a "no such task" message names, else the only (or first) one asked for."""
    for task_id in task_ids:
        if any(task_id in m for m in messages):
            return task_id
    return task_ids[0]


def _redirect(reply: Reply, url: str, redact: Redactor) -> RedirectError:
    location = reply.headers.get("Location") or ""
    target = urlsplit(urljoin(url, location)) if location else None
    host = redact(shorten(target.netloc or "(no host)", 100)) if target else "(no Location)"
    return RedirectError(
        f"{urlsplit(url).path} answered HTTP {reply.status}, redirecting to {host}: API calls "
        "do not follow redirects, so nothing was sent there; check APIFRAME_BASE_URL "
        "(https://, no trailing path)",
        location=redact(shorten(location, 200)) if location else None,
        status_code=reply.status,
    )


def _excerpt(reply: Reply, redact: Redactor) -> str:
    text = " ".join(redact(reply.text[: EXCERPT_CHARS * 8]).split())
    return shorten(text, EXCERPT_CHARS)


def _body(reply: Reply, redact: Redactor) -> Any:
    text = redact(reply.text)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text[: EXCERPT_CHARS * 4]


def _described(exc: BaseException) -> str:
    """What went wrong on the wire, in a few words (not yet scrubbed of secrets)."""
    return str(exc) if str(exc) else type(exc).__name__


def _certainly_not_sent(exc: BaseException) -> bool:
    """True when the request never reached the server (so resubmitting is safe)."""
    if isinstance(exc, DeadlinePassed):
        return exc.before_sending
    return isinstance(exc, TransportError) and not exc.sent
