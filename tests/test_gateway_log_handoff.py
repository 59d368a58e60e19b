"""The gateway's log is written by a thread of its own: a log that cannot keep up (a full
pipe nobody reads) never holds up the thread that logs, and says what it dropped."""

from __future__ import annotations

import logging
import os
import threading

from runway_widget.gateway.log_format import RECORDS_WAITING, handed_off
from tests.waiting import wait_for


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [handler]
    return logger


def test_a_log_nobody_reads_never_blocks_the_caller_and_says_what_it_dropped() -> None:
    read_end, write_end = os.pipe()  # nobody reads: writes block once the pipe is full
    stream = os.fdopen(write_end, "w", buffering=1)
    hand_off, listener = handed_off(logging.StreamHandler(stream))
    log = _logger("test.handoff.blocked", hand_off)
    logged = threading.Event()

    def flood() -> None:
        for i in range(3 * RECORDS_WAITING):
            log.info("request %d %s", i, "x" * 200)
        logged.set()

    threading.Thread(target=flood, daemon=True).start()
    assert logged.wait(30), "logging waited for a log nobody reads"
    assert hand_off.dropped > 0

    with os.fdopen(read_end, "rb") as pipe:  # a reader comes: the log catches up
        read: list[bytes] = []
        reader = threading.Thread(target=lambda: read.append(pipe.read()), daemon=True)
        reader.start()
        wait_for(hand_off.queue.empty, timeout=30)  # type: ignore[attr-defined]
        log.info("after the flood")
        listener.stop()
        stream.close()
        reader.join(30)
    text = read[0].decode()
    assert "log record(s) dropped: the log could not keep up" in text
    assert text.rstrip().endswith("after the flood")


def test_stopping_gives_up_on_a_log_that_never_drains() -> None:
    _read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", buffering=1)
    hand_off, listener = handed_off(logging.StreamHandler(stream), stop_seconds=0.2)
    log = _logger("test.handoff.stuck", hand_off)
    for i in range(RECORDS_WAITING + 10):
        log.info("request %d %s", i, "x" * 200)
    stopped = threading.Event()

    def stop() -> None:
        listener.stop()
        stopped.set()

    threading.Thread(target=stop, daemon=True).start()
    assert stopped.wait(10), "the exit would wait forever for the log"


def test_records_keep_their_message_traceback_and_order() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    hand_off, listener = handed_off(Keep())
    log = _logger("test.handoff.kept", hand_off)
    shown = {"n": 1}
    log.info("first %(n)s", shown)
    shown["n"] = 2  # changed after the call: the record says what it was then
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("second")
    log.info("third", extra={"request": {"status": 200}})
    listener.stop()

    assert [record.getMessage() for record in records] == ["first 1", "second", "third"]
    assert records[1].exc_info is not None and records[1].exc_info[0] is ValueError
    assert records[2].request == {"status": 200}  # type: ignore[attr-defined]
