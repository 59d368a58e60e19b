"""A ``?token=`` never reaches a log line: not the access log, not tornado's warnings or errors."""

from __future__ import annotations

import logging
import sqlite3
import sys

import pytest
import requests

from runway_widget.gateway.log_redaction import TokenRedaction, redact_tokens
from tests.gateway_support import all_log_records, demo_gateway

pytestmark = pytest.mark.timeout(120)

SECRET = "rwg_SeCrEt0123456789abcdef"


@pytest.mark.parametrize(
    "text",
    [
        f"GET /gallery?token={SECRET} (127.0.0.1)",
        f"GET /gallery?TOKEN={SECRET}",
        f"GET /gallery.json?since=1&ToKeN={SECRET}&x=2",
        f"GET /gallery?a=b;token={SECRET}",
        f"GET /gallery?%74oken={SECRET}",
        f"GET /gallery?t%6Fk%65n={SECRET}",
        f"GET /gallery?%2574oken={SECRET}",
        f"GET /gallery?access_token={SECRET}",
        f"HTTPServerRequest(uri='/admin?token={SECRET}', remote_ip='127.0.0.1')",
    ],
)
def test_every_spelling_of_a_token_in_a_query_is_cut(text):
    cleaned = redact_tokens(text)
    assert SECRET not in cleaned and "token=…" in cleaned.lower()


def test_text_without_a_token_is_left_alone():
    for text in ("GET /gallery?since=12.5 (127.0.0.1)", "100%ff done", "tokens = 3"):
        assert redact_tokens(text) == text


def test_the_filter_rewrites_message_and_traceback_and_drops_nothing():
    try:
        raise ValueError(f"bad request /admin?token={SECRET}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "tornado.application",
        logging.ERROR,
        __file__,
        1,
        "%s %r",
        ("GET", f"?token={SECRET}"),
        exc_info,
    )
    assert TokenRedaction().filter(record) is True
    written = logging.Formatter().format(record)
    assert SECRET not in written and "Traceback" in written and "ValueError" in written


@pytest.fixture
def everything():
    with all_log_records() as captured:
        yield captured


def test_refused_and_failing_page_requests_never_log_their_token(tmp_path, everything):
    with demo_gateway(tmp_path) as gateway:
        admin = gateway.add_participant("teacher", admin=True)
        base = gateway.base_url
        refused = [
            f"/gallery.json?token={SECRET}",  # unknown token: tornado warns, with the URI
            f"/gallery.json?since=1&ToKeN={SECRET}",
            f"/gallery.json?%74oken={SECRET}",
            f"/gallery?token={SECRET}%ff",  # not UTF-8: tornado would quote the value
            f"/admin?x=1&token={SECRET}",
            f"/no-such-page?token={SECRET}",
        ]
        for path in refused:
            assert 400 <= requests.get(base + path, timeout=10).status_code < 500, path
        signed_in = requests.get(f"{base}/gallery?token={admin}", timeout=10)
        assert signed_in.status_code == 200
        with sqlite3.connect(tmp_path / "gateway.sqlite3") as db:  # the database breaks
            db.execute("ALTER TABLE gateway_participants RENAME TO gone")
        failed = requests.get(f"{base}/gallery.json?since=1&token={admin}", timeout=10)
        assert failed.status_code == 500
    written = "\n".join(everything.lines)
    assert "Uncaught exception" in written and "401" in written  # the lines were written...
    assert SECRET not in written and admin not in written  # ...without the tokens
    assert "token=…" in written.lower()
