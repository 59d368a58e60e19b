"""How ``gateway serve`` writes its log: lines for people, or JSON objects for a cluster's
log collector (``--log-format json``, with ``python-json-logger``).

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, an
exception's traceback as ``exc_info``, and an access-log record's fields as ``request``
(method, path, status, milliseconds, participant, client address; never a header or a
query). Both formats pass `log_redaction` first, so no ``token=`` reaches either.

Records are formatted and written by a thread of their own (`logging.handlers.QueueListener`):
the event loop only hands them over, so neither a slow terminal or log pipe nor the
formatting of each access-log line holds up a request.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .log_redaction import redact_tokens_in_logs

__all__ = ["LOG_FORMATS", "HandOff", "JsonLines", "LogWriter", "configure_logging", "handed_off"]

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


RECORDS_WAITING = 10_000  # records handed over, not written yet; beyond that they are dropped
STOP_SECONDS = 5.0  # at exit, the longest the writer is waited for (a log may be stuck)


class HandOff(QueueHandler):
    """Hands records to the writer thread (a `QueueListener`) and never waits for it: when
    the log cannot keep up, records are dropped and the next one handed over says how many.

    The message is made here (its arguments may change later); the formatting is left to the
    writer, whose formatter still sees the traceback and the extra fields."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord]) -> None:
        super().__init__(records)
        self._records = records
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None  # the same text, made now
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.dropped:
            note = logging.LogRecord(
                "runway_widget.gateway",
                logging.WARNING,
                __file__,
                0,
                f"{self.dropped} log record(s) dropped: the log could not keep up",
                None,
                None,
            )
            if not self._offer(note):
                self.dropped += 1
                return
            self.dropped = 0
        if not self._offer(record):
            self.dropped += 1

    def _offer(self, record: logging.LogRecord) -> bool:
        if self._records.qsize() >= RECORDS_WAITING:
            return False
        self._records.put(record)
        return True


class LogWriter(QueueListener):
    """Writes what was handed off; stopping waits at most ``stop_seconds`` for a stuck log."""

    def __init__(
        self,
        records: queue.SimpleQueue[logging.LogRecord],
        handler: logging.Handler,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        super().__init__(records, handler)
        self._stop_seconds = stop_seconds

    def stop(self) -> None:
        thread = self._thread
        if thread is not None:
            self.enqueue_sentinel()  # a SimpleQueue: never waits
            thread.join(self._stop_seconds)
            self._thread = None


def handed_off(
    handler: logging.Handler, stop_seconds: float = STOP_SECONDS
) -> tuple[HandOff, LogWriter]:
    """A `HandOff` for the event loop's side, and the started writer to ``handler``."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()  # no lock to notify
    listener = LogWriter(records, handler, stop_seconds)
    listener.start()
    return HandOff(records), listener


def configure_logging(log_format: str = "text") -> None:
    """INFO and up to stderr in ``log_format``, tokens redacted (the process's only log),
    written by a thread of its own until the process exits."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    redact_tokens_in_logs(handler)
    hand_off, listener = handed_off(handler)
    atexit.register(listener.stop)  # every record handed over is written before the exit
    logging.basicConfig(level=logging.INFO, handlers=[hand_off])
