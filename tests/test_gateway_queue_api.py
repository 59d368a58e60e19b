"""What participants and the instructor see of the queue, over HTTP and on the command line.

A gateway told the upstream runs one job at once, on a scripted upstream whose tasks run
until the test says: the first job goes up, the others wait in line.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from runway_widget.cli.commands import main
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.errors import CancelRefusedError, TaskNotFoundError
from runway_widget.gateway.app import GatewayServer
from runway_widget.gateway.upstream import Upstream
from tests.api_server import TEST_API_KEY, ApiServer
from tests.gateway_support import call, gateway_on, participant, upstream_client, upstream_id
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

JOB = {"prompt": "a queue of boats", "generation_type": "text2video"}


@dataclass
class Line:
    gateway: GatewayServer
    api: ApiServer
    ana: ApiframeClient
    ben: ApiframeClient
    running: str  # ana's job, sent upstream
    waiting: list[str]  # ben's two jobs, in the queue


@pytest.fixture
def line(tmp_path) -> Iterator[Line]:
    with ApiServer() as api:
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path, upstream_concurrency=1) as gateway:
            ana = participant(gateway, tmp_path, "ana", jobs=3)
            ben = participant(gateway, tmp_path, "ben", jobs=3)
            running = ana.imagine(**JOB)
            upstream_id(gateway, running)
            waiting = [ben.imagine(**JOB), ben.imagine(**JOB)]
            yield Line(gateway, api, ana, ben, running, waiting)


def test_a_waiting_job_is_staged_with_its_place_in_line(line):
    first, second = (line.ben.fetch(task_id) for task_id in line.waiting)
    assert (first.status, first.percentage, first.queue_position) == ("staged", 0, 1)
    assert second.queue_position == 2
    assert [t.queue_position for t in line.ben.fetch_many(line.waiting)] == [1, 2]
    assert line.ana.fetch(line.running).queue_position is None  # it went up
    account = line.ben.account()
    assert (account["queued"], account["running"], account["jobs_left"]) == (2, 0, 1)
    assert line.ana.account()["queued"] == 0


def test_cancelling_a_waiting_job_frees_its_quota_and_moves_the_line(line):
    cancelled = line.ben.cancel(line.waiting[0])
    assert cancelled.is_failed and "cancelled" in (cancelled.message or "")
    assert line.ben.fetch(line.waiting[0]).is_failed
    assert line.ben.fetch(line.waiting[1]).queue_position == 1
    assert line.ben.account()["jobs_left"] == 2  # the quota is given back
    assert line.ben.cancel(line.waiting[0]).is_failed  # a second cancel changes nothing
    assert line.gateway.report()[1]["cancelled"] == 1
    assert line.api.count("/runway-imagine") == 1  # nothing of it went upstream


def test_a_job_that_left_the_queue_cannot_be_cancelled_and_anothers_is_unknown(line):
    with pytest.raises(CancelRefusedError, match="left the queue"):
        line.ana.cancel(line.running)
    reply = call(line.gateway, "DELETE", f"/task/{line.running}", line.ana.api_key)
    assert reply.status_code == 409 and reply.json()["errors"][0]["code"] == "already_sent"
    with pytest.raises(TaskNotFoundError):
        line.ana.cancel(line.waiting[0])  # ben's: it answers as an unknown one would
    assert line.ben.fetch(line.waiting[0]).queue_position == 1
    assert call(line.gateway, "DELETE", "/task/no-such-task", line.ben.api_key).status_code == 404


def test_the_command_line_shows_the_place_in_line_and_cancels(line, monkeypatch, capsys):
    monkeypatch.setenv("APIFRAME_API_KEY", line.ben.api_key)
    monkeypatch.setenv("APIFRAME_BASE_URL", line.gateway.base_url)
    monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "0.05")
    assert main(["wait", line.waiting[1], "--timeout", "0.5"]) == 1
    assert "queued · 2nd in line" in capsys.readouterr().err  # the progress bar says so
    assert main(["fetch", line.waiting[0]]) == 0
    assert "queued · 1st in line" in capsys.readouterr().out
    assert main(["cancel", line.waiting[0]]) == 0
    assert "failed" in capsys.readouterr().out
    monkeypatch.setenv("APIFRAME_API_KEY", line.ana.api_key)
    assert main(["cancel", line.running]) == 1
    assert "cannot be cancelled" in capsys.readouterr().err
    assert main(["account"]) == 0
    assert "queued: 0" in capsys.readouterr().out


def test_the_instructor_sees_the_queue_and_puts_someone_first(line, capsys):
    db = ["--db", str(line.gateway.engine.url)]
    cy = participant(line.gateway, line.gateway.home, "cy", jobs=2)
    late = cy.imagine(**JOB)  # cy's first job: ahead of ben's second, behind his first
    assert cy.fetch(late).queue_position == 2
    assert main(["gateway", "queue", "show", *db]) == 0
    shown = capsys.readouterr().out
    said = r"3 waiting, the longest for \d+s; 1 running upstream, limit 1 \(stated\)"
    assert re.search(said, shown)
    assert [line.split(".")[0].strip() for line in shown.splitlines()[1:]] == ["1", "2", "3"]
    assert main(["gateway", "queue", "first", "cy", *db]) == 0
    _place_becomes(cy, late, 1)  # the projector's demo goes next
    assert main(["gateway", "queue", "first", "nobody", *db]) == 1
    assert main(["gateway", "queue", "first", "cy", "--off", *db]) == 0
    _place_becomes(cy, late, 2)


def _place_becomes(person: ApiframeClient, task_id: str, place: int) -> None:
    """Places are read again at least twice a second: the new one shows within that."""
    deadline = time.monotonic() + 5
    while person.fetch(task_id).queue_position != place:
        assert time.monotonic() < deadline, f"{task_id} never became {place} in line"
        time.sleep(0.05)


def test_admin_and_gallery_pages_show_the_queue_and_admin_puts_first(line):
    from tests.test_gateway_admin import Browser

    line.gateway.admin_token = line.gateway.add_participant("teacher", admin=True)
    admin = Browser(line.gateway)
    page = admin.page()
    assert "queue: 2 waiting" in page and "running upstream of 1 (stated)" in page
    ben = next(row for row in line.gateway.report() if row["name"] == "ben")
    assert page.count(f'action="admin/participant/{ben["id"]}/first"') == 2  # his two jobs
    feed = call(line.gateway, "GET", "/gallery.json", line.gateway.admin_token).json()
    assert feed["queue"]["queued"] == 2 and feed["queue"]["oldest_wait"] >= 0
    said = html.unescape(admin.said(f"participant/{ben['id']}/first"))
    assert said.startswith("done: ben's jobs go first")
    assert 'class="rw-tag">first</span>' in admin.page()
    assert admin.post(f"participant/{ben['id']}/first", _xsrf="forged").status_code == 403
    said = html.unescape(admin.said(f"participant/{ben['id']}/back-in-line"))
    assert said == "done: ben's jobs are back in line with everyone"
    not_admin = call(
        line.gateway, "POST", f"/admin/participant/{ben['id']}/first", line.ben.api_key
    )
    assert not_admin.status_code == 403


def test_the_panel_says_the_place_in_line_and_cancels_a_waiting_job(line, tmp_path):
    from runway_widget.widget import RunwayPanel

    panel = RunwayPanel(client=line.ben, download_dir=tmp_path / "videos")
    try:
        views = [panel.view(panel.attach(task_id)) for task_id in line.waiting]
        for view, place in zip(views, ("1st", "2nd"), strict=True):
            said = f"queued · {place} in line"
            wait_for(lambda v=view, s=said: v.label.startswith(s), f"the label {said!r}")
            assert "cancel" in view.actions
        views[0].act("cancel")
        wait_for(lambda: views[0].status == "failed", "the first job to fail")
        assert "cancelled" in views[0].message and "cancel" not in views[0].actions
        moved_up = "queued · 1st in line"
        wait_for(lambda: views[1].label.startswith(moved_up), "the second job to move up")
    finally:
        panel.close()
    assert line.ben.account()["jobs_left"] == 2


def test_the_queues_flags_are_checked_before_anything_starts(capsys):
    assert main(["gateway", "serve", "--port", "0", "--demo-concurrency", "3"]) == 1
    assert "--demo-concurrency is for --upstream demo" in capsys.readouterr().err
    assert main(["gateway", "serve", "--upstream-concurrency", "0"]) == 2
    assert "not a whole number of jobs from 1" in capsys.readouterr().err
    assert main(["demo-server", "--concurrency", "0"]) == 2
    assert "--concurrency must be 1 or more" in capsys.readouterr().err
