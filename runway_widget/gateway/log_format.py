"""How ``gateway serve`` writes its log: lines for people, or JSON objects for a cluster's
log collector (``--log-format json``, with ``python-json-logger``).

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, an
exception's traceback as ``exc_info``, and an access-log record's fields as ``request``
(method, path, status, milliseconds, participant, client address; never a header or a
query). Both formats pass `log_redaction` first, so no ``token=`` reaches either.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .log_redaction import redact_tokens_in_logs

__all__ = ["LOG_FORMATS", "JsonLines", "configure_logging"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"


class JsonLines(JsonFormatter):
    """One JSON object a record; an access-log record's message is its request line."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601, UTC
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, *rest: Any) -> None:
        super().add_fields(log_data, record, *rest)
        request = log_data.get("request")
        if isinstance(request, dict):  # the access log's text is the same fields as JSON
            log_data["message"] = f"{request.get('method')} {request.get('path')} " + str(
                request.get("status")
            )


def configure_logging(log_format: str = "text") -> None:
    """INFO and up to stderr in ``log_format``, tokens redacted (the process's only log)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    redact_tokens_in_logs(handler)
