"""No log line carries a ``token=`` from a request's address.

A browser signs in with ``/gallery?token=…`` once, and tornado logs a request's full URI
when it refuses one (``400 GET /gallery?token=… (…)``) or fails on it (with the request's
``repr``). `TokenRedaction` cuts the value of every ``token=`` (any case, anywhere, also
percent-encoded) out of each record of tornado's and the gateway's loggers, message and
traceback alike, before any handler sees it. The gateway's own access log writes paths
only, never a query.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

__all__ = ["LOGGERS", "TokenRedaction", "redact_tokens", "redact_tokens_in_logs"]

LOGGERS = (
    "tornado.access",
    "tornado.application",
    "tornado.general",
    "asyncio",
    "runway_widget",
    "runway_widget.gateway",
    "runway_widget.gateway.access",
)
_TOKEN_VALUE = re.compile(r"(token=)[^&;\s'\"]*", re.IGNORECASE)
_DECODINGS = 3  # %2574oken is %74oken is token
REDACTED = "…"


def redact_tokens(text: str) -> str:
    """``text`` with every ``token=`` value cut (decoded first when it hides one)."""
    decoded = text
    for _ in range(_DECODINGS):
        if _TOKEN_VALUE.search(decoded) or "%" not in decoded:
            break
        decoded = unquote(decoded)
    if not _TOKEN_VALUE.search(decoded):
        return text
    return _TOKEN_VALUE.sub(r"\1" + REDACTED, decoded)


class TokenRedaction(logging.Filter):
    """Rewrites a record whose message or traceback holds a ``token=`` value; drops none."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it, as without a filter
            return True
        cleaned = redact_tokens(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            cleaned = redact_tokens(record.exc_text)
            if cleaned != record.exc_text:
                record.exc_text, record.exc_info = cleaned, None
        return True


_FILTER = TokenRedaction()


def redact_tokens_in_logs(*handlers: logging.Handler) -> None:
    """Put the filter on `LOGGERS` (and on ``handlers``, which see every logger); idempotent."""
    for target in [*(logging.getLogger(name) for name in LOGGERS), *handlers]:
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
