"""Text from a hostile upstream reaches the database clean, and one bad update stays its own.

The upstream is `ApiServer` sending what JSON allows and databases refuse: a lone surrogate
(``"\\ud83c"``), NUL and escape characters, a megabyte of message, a status longer than its
column, a ``javascript:`` URL. Every check runs on SQLite and on PostgreSQL (whose
``VARCHAR`` lengths and NUL refusal SQLite does not have). Where the database must refuse
an update even after the boundary, a trigger makes it, as any database-side rule would.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from runway_widget.errors import TaskFailedError
from runway_widget.gateway.db.database import metadata, open_engine
from runway_widget.gateway.db.ledger import UNSTORED_MESSAGE, Ledger
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.db.upstream_text import (
    MESSAGE_LIMIT,
    plain_text,
    storable_id,
    storable_url,
    valid_unicode,
)
from runway_widget.gateway.upstream import Upstream
from runway_widget.models import Task
from tests.api_server import TEST_API_KEY, ApiServer, Reply
from tests.gateway_support import (
    ended,
    gateway_on,
    needs_postgres,
    participant,
    postgres_server,
    upstream_client,
    upstream_id,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

MEGABYTE = "m" * 1_000_000
KINDS = ["sqlite", pytest.param("postgresql", marks=needs_postgres)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@contextlib.contextmanager
def _database(kind: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty gateway database of ``kind`` (PostgreSQL: one server per module)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'gateway.sqlite3'}"
        return
    url = request.getfixturevalue("postgres")
    yield url
    engine = open_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


def _refuse_poison(engine: Engine) -> None:
    """A rule of the database's own: no update whose message says "poison"."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE UPDATE ON gateway_jobs "
                    "WHEN NEW.message LIKE '%poison%' "
                    "BEGIN SELECT RAISE(ABORT, 'this database refuses poison'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.message LIKE '%poison%' THEN "
                    "RAISE EXCEPTION 'this database refuses poison'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE UPDATE ON gateway_jobs "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
                )
            )


# -- the boundary ------------------------------------------------------------------------------


def test_text_is_made_valid_unicode_one_line_without_controls_and_capped():
    assert valid_unicode("a\ud83cb") == "a\ufffdb"
    assert valid_unicode("\ud83c\udf89") == "\U0001f389"  # a proper pair is one character
    assert plain_text("bad\x00 \x1b[31mred\x1b[0m\u202eevil\r\nnext\x9b", 100) == (
        "bad [31mred[0mevil next"
    )
    assert len(plain_text(MEGABYTE, MESSAGE_LIMIT)) == MESSAGE_LIMIT
    assert plain_text("\x00\x07", 10) is None and plain_text(None, 10) is None


def test_only_http_urls_are_kept_and_only_as_they_came():
    assert storable_url("https://cdn.test/v.mp4?sig=a%20b") == "https://cdn.test/v.mp4?sig=a%20b"
    for url in (
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://cdn.test/\x00.mp4",
        "https://cdn.test/\ud83c.mp4",
        "https://cdn.test/" + "a" * 5000,
        42,
    ):
        assert storable_url(url) is None


def test_task_ids_that_cannot_be_stored_exactly_are_not_ours():
    assert storable_id("task-0001")
    for task_id in ("", "t\ud83c", "t\x00", "t\u200b", "t" * 201, None):
        assert not storable_id(task_id)


# -- the ledger, on both databases -------------------------------------------------------------


def _submitted(ledger: Ledger, *task_ids: str) -> int:
    token = Roster(ledger.engine).add("ada", Limits())
    who = Roster(ledger.engine).authenticate(token)
    assert who is not None
    for task_id in task_ids:  # the upstream took them as ``task_ids``
        job = ledger.reserve(who.id, 5, {"prompt": task_id}, sender="here")
        ledger.accepted(job.job_id, task_id, "here")
    return who.id


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_updates_are_stored_clean_in_one_batch(tmp_path, request, kind):
    with _database(kind, tmp_path, request) as url:
        ledger = Ledger(open_engine(url))
        _submitted(ledger, "surrogate", "huge", "controls", "long-status", "script", "plain")
        recorded = ledger.update_tasks(
            [
                Task("surrogate", "processing", 10, message="broken \ud83c here"),
                Task("huge", "failed", message=MEGABYTE),
                Task("controls", "processing", 20, message="nul\x00 and \x1b]0;title\x07"),
                Task("long-status", "x" * 40 + "\x00", 30),
                Task("script", "finished", 100, video_url="javascript:alert(document.domain)"),
                Task("echo-\ud83c", "finished", 100, video_url="https://cdn.test/x.mp4"),
                Task("plain", "processing", 50, message="fine"),
            ]
        )
        rows = {
            row.upstream_task_id: row
            for row in ledger.jobs_by_upstream(
                ["surrogate", "huge", "controls", "long-status", "script", "plain"]
            )
        }
        ledger.engine.dispose()
    assert recorded.retry == [] and recorded.refused == {}
    assert rows["surrogate"].message == "broken \ufffd here"
    assert (rows["huge"].state, len(rows["huge"].message)) == ("failed", MESSAGE_LIMIT)
    assert rows["controls"].message == "nul and ]0;title"
    assert rows["long-status"].status == "x" * 31 + "…"  # the column's 32 characters
    assert rows["script"].state == "finished" and rows["script"].upstream_video_url is None
    assert (rows["plain"].status, rows["plain"].percentage) == ("processing", 50)


@pytest.mark.parametrize("kind", KINDS)
def test_an_update_the_database_refuses_holds_back_no_other(tmp_path, request, kind):
    with _database(kind, tmp_path, request) as url:
        engine = open_engine(url)
        ledger = Ledger(engine)
        owner = _submitted(ledger, "poisoned", "ok-1", "ok-2")
        _refuse_poison(engine)
        recorded = ledger.update_tasks(
            [
                Task("ok-1", "processing", 40),
                Task("poisoned", "failed", message="poison pill", video_url="https://x.test/a"),
                Task("ok-2", "finished", 100, video_url="https://cdn.test/ok-2.mp4"),
            ]
        )
        rows = {
            row.upstream_task_id: row
            for row in ledger.jobs_by_upstream(["poisoned", "ok-1", "ok-2"])
        }
        account = ledger.account(owner)
        engine.dispose()
    assert list(recorded.refused) == ["poisoned"] and recorded.retry == []
    assert "poison" in str(recorded.refused["poisoned"])
    assert (rows["ok-1"].status, rows["ok-1"].percentage) == ("processing", 40)
    assert rows["ok-2"].state == "finished"
    # the refused task still ends (its slot is freed), told plainly what happened
    assert (rows["poisoned"].state, rows["poisoned"].message) == ("failed", UNSTORED_MESSAGE)
    assert account is not None and account["running"] == 1  # ok-1 runs on


# -- through a running gateway -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_upstream_freezes_no_participant(tmp_path, request, kind, caplog):
    caplog.set_level(logging.INFO, logger="runway_widget.gateway")
    with _database(kind, tmp_path, request) as url, ApiServer() as api:
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        polls = (0.05, 0.5)  # the gateway polls the upstream often: each read is one step
        with gateway_on(Upstream(client), tmp_path, db=url, poll_interval=polls) as gateway:
            _refuse_poison(gateway.engine)
            eve, ada, bo = (participant(gateway, tmp_path, n) for n in ("eve", "ada", "bo"))
            hostile = [eve.imagine(prompt=f"p{i}", generation_type="text2video") for i in range(4)]
            calm = ada.imagine(prompt="calm", generation_type="text2video")
            poisoned = bo.imagine(prompt="poisoned", generation_type="text2video")
            steps = [
                {"status": "processing", "percentage": "10", "message": "\ud83c"},
                {"status": "processing\x1b[2J", "percentage": "20", "message": MEGABYTE},
                {"status": "processing", "percentage": "30", "message": "nul \x00 \x9b31m"},
                {
                    "status": "failed",
                    "percentage": "40",
                    "message": "bye \ud800",
                    "video_url": "javascript:alert(1)",
                },
            ]
            for task_id in hostile:
                api.add_task(upstream_id(gateway, task_id), *steps)
            api.add_task(
                upstream_id(gateway, calm),
                {"status": "processing", "percentage": "50"},
                {"status": "failed", "message": "ordinary end"},
            )
            poisoned_upstream = upstream_id(gateway, poisoned)
            api.add_task(
                poisoned_upstream,
                {"status": "processing", "percentage": "5"},
                {"status": "failed", "message": "poison"},
            )

            ended = wait_for(
                lambda: all(
                    t.is_done
                    for t in (ada.fetch(calm), bo.fetch(poisoned), *map(eve.fetch, hostile))
                )
            )
            assert ended
            calm_task, poisoned_task = ada.fetch(calm), bo.fetch(poisoned)
            hostile_tasks = [eve.fetch(task_id) for task_id in hostile]
    assert calm_task.message == "ordinary end"
    assert poisoned_task.message == UNSTORED_MESSAGE
    for task in hostile_tasks:
        assert (task.status, task.message, task.video_url) == ("failed", "bye \ufffd", None)
    told = [r.getMessage() for r in caplog.records if r.name == "runway_widget.gateway"]
    refusals = [m for m in told if "refused the update of task" in m]
    assert len(refusals) == 1 and poisoned_upstream in refusals[0]  # once, though polled again
    assert not [m for m in told if "task update(s)" in m]  # no batch failed, none retried


@pytest.mark.parametrize("task_id", ["t-\ud83c", "t" * 300, "t\u200b"])
def test_a_task_id_the_gateway_cannot_store_is_an_unknown_submission(tmp_path, task_id):
    with ApiServer() as api:
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path) as gateway:
            cy = participant(gateway, tmp_path, "cy", jobs=3)
            api.script("/runway-imagine", Reply(200, json={"task_id": task_id}))
            mine = cy.imagine(prompt="paid but unfollowable", generation_type="text2video")
            assert ended(gateway, mine).state == "unknown"
            with pytest.raises(TaskFailedError, match="cannot store or follow"):
                cy.wait(mine, timeout=10, poll_interval=0.1)
            [row] = gateway.report()
            account = cy.account()
    assert (row["unknown"], row["jobs_used"], row["running"]) == (1, 1, 0)
    assert account["jobs_left"] == 2
