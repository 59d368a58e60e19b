"""A participant's panel through a workshop gateway.

It names the workshop and whose seat it is (not the gateway's address); when the quota is
used up it says so and who to ask, and Generate waits until there is more; and jobs the
history says are running are counted as being checked until the backend has spoken of them.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runway_widget.cli.commands import main
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.client.credentials import join_gateway
from runway_widget.gateway import Limits
from runway_widget.models import GenerationRequest, Task
from runway_widget.store import JobStore
from runway_widget.widget import RunwayPanel
from runway_widget.widget.header import counts_text
from runway_widget.widget.history import job_from_record
from runway_widget.widget.media.source import MediaSource, MediaUnavailable
from tests.api_server import TEST_API_KEY, ApiServer, Reply
from tests.gateway_support import demo_gateway
from tests.widget_helpers import tags, wait_for

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def participant_panel(gateway: Any, folder: Path, name: str, **limits: Any
                      ) -> Iterator[RunwayPanel]:
    """A panel on a new participant's own token (their own history), closed afterwards."""
    token = gateway.add_participant(name, **limits)
    client = ApiframeClient(token, gateway.base_url, store=JobStore(folder / f"{name}.jsonl"))
    panel = RunwayPanel(client=client)
    try:
        yield panel
    finally:
        panel.close()


def _badge(panel: RunwayPanel) -> str:
    """The text of the header's backend badge."""
    markup = panel.header.title.value
    start = markup.index('class="rw-badge rw-badge-live"')
    return markup[markup.index(">", start) + 1 : markup.index("</span>", start)]


def test_a_joined_panel_names_the_workshop_and_the_participant(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "config"))
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.add_join_code("ROOM-1", seats=3, limits=Limits(jobs=2))
        join_gateway(gateway.base_url, "ROOM-1", "alice")
        client = ApiframeClient(store=JobStore(tmp_path / "jobs.jsonl"))  # found from the join
        assert (client.is_workshop, client.participant) == (True, "alice")
        panel = RunwayPanel(client=client)
        try:
            assert _badge(panel) == "workshop · alice"  # before any request: from the join
            title = dict(tags(panel.header.title.value)[-2][1]).get("title")
            assert title == f"the workshop gateway at {gateway.base_url}"
            summary, text = panel._summary.render()
            assert "workshop · alice" in summary and "127.0.0.1" not in text
        finally:
            panel.close()


def test_a_token_given_by_hand_is_named_once_the_account_answers(tmp_path):
    with demo_gateway(tmp_path) as gateway, participant_panel(gateway, tmp_path, "eve") as panel:
        fresh = ApiframeClient(panel.client.api_key, gateway.base_url)
        assert not fresh.is_workshop  # nothing says so before the gateway answers
        panel.header.refresh_credits(wait=True)
        assert _badge(panel) == "workshop · eve"
        assert panel.header.backend_label == "workshop · eve"


def test_a_used_up_quota_disables_generate_until_the_instructor_gives_more(tmp_path):
    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    with demo_gateway(tmp_path, job_seconds=0.3) as gateway, \
            participant_panel(gateway, tmp_path, "eve", jobs=1) as panel:
        panel.form.prompt.value = "a paper boat on a river"
        job = panel.submit()
        panel.tracker.wait(job.task_id, timeout=60)
        assert panel.submit() is None
        banner = panel.banner
        assert "Your workshop quota is used up: nothing was sent" in banner
        assert "Ask the instructor for more jobs" in banner
        assert "wait for running jobs" not in banner
        wait_for(lambda: panel.form.generate.disabled, "Generate to be disabled")
        assert "ask the instructor for more" in panel.form._status.value
        # A panel started later, with the quota used up, is disabled once the account says.
        later = RunwayPanel(client=panel.client)
        try:
            wait_for(lambda: later.form.generate.disabled, "the later panel's Generate")
        finally:
            later.close()
        # The instructor gives the job back; Refresh enables Generate again.
        assert main(["gateway", "token", "give-back", "eve", "--jobs", "1", "--db", db]) == 0
        panel.refresh()
        assert not panel.form.generate.disabled and panel.form._status.value == ""
        assert panel.submit() is not None


def test_too_many_running_at_once_says_wait_and_keeps_generate(tmp_path):
    with demo_gateway(tmp_path, job_seconds=30) as gateway, \
            participant_panel(gateway, tmp_path, "finn", concurrent=1) as panel:
        panel.form.prompt.value = "a kite over the dunes"
        assert panel.submit() is not None
        panel.form.prompt.value = "a second kite"
        assert panel.submit() is None
        assert "As many of your jobs are running as your workshop quota allows" in panel.banner
        assert "Wait for one of them to finish" in panel.banner
        panel.header.refresh_credits(wait=True)
        assert not panel.form.generate.disabled


def test_earlier_jobs_count_as_checking_until_the_backend_answers(tmp_path):
    """A kernel restarted after its jobs finished: the history still says 'processing'."""
    with ApiServer() as api:
        api.add_task("t-1", {"status": "finished", "percentage": 100,
                             "video_url": api.base_url + "/clip.mp4"})
        store = JobStore(tmp_path / "jobs.jsonl")
        request = GenerationRequest(prompt="a lighthouse", generation_type="text2video")
        store.record_submission("t-1", request, backend=api.base_url)
        store.record_task(Task("t-1", "processing", 40), backend=api.base_url)
        answer, asked = threading.Event(), threading.Event()

        def held(_seen: object) -> dict[str, object]:
            asked.set()
            answer.wait(30)
            return api.tasks["t-1"]

        api.script("/fetch", Reply(json=held))
        client = ApiframeClient(TEST_API_KEY, api.base_url, store=store)
        panel = RunwayPanel(client=client)
        try:
            assert asked.wait(30)
            assert panel.header.counts.value.endswith("0 running · 0 finished · checking 1 job…"
                                                      "</span>")
            answer.set()
            wait_for(lambda: "1 finished" in panel.header.counts.value, "the backend's answer")
            assert "checking" not in panel.header.counts.value
        finally:
            answer.set()
            panel.close()


def test_a_job_is_checked_by_the_backend_even_when_nothing_changed(tmp_path):
    store = JobStore(tmp_path / "jobs.jsonl")
    store.record_submission("t-2", GenerationRequest(prompt="p", generation_type="text2video"),
                            backend="https://api.example")
    store.record_task(Task("t-2", "processing", 40), backend="https://api.example")
    job = job_from_record(store.get("t-2"))
    assert job.snapshot().counted_as == "checking"
    changes: list[str] = []
    job.subscribe(lambda j: changes.append(j.snapshot().counted_as))
    assert job.apply(Task("t-2", "processing", 40), when=time.time()) is False  # history again
    assert changes == []
    assert job.apply(Task("t-2", "processing", 40)) is False  # the backend: no news, but seen
    assert changes == ["running"] and job.state == "running"
    assert counts_text(["running", "checking", "checking", "finished"]) == (
        "1 running · 1 finished · checking 2 jobs…"
    )


def test_the_saved_summary_of_gateway_jobs_has_their_posters_and_links(tmp_path):
    """The kernel reads its own gateway's clips for the posters, even off loopback."""
    with demo_gateway(tmp_path, job_seconds=0.3) as gateway, \
            participant_panel(gateway, tmp_path, "alice", jobs=3) as panel:
        for prompt in ("a lighthouse in a storm", "a kite over the dunes"):
            panel.form.prompt.value = prompt
            assert panel.submit() is not None
        for job in panel.jobs:
            panel.tracker.wait(job.task_id, timeout=60)
        wait_for(lambda: panel._summary.render()[0].count("data:image/jpeg;base64,") == 2,
                 "both posters in the summary")
        summary = panel._summary.render()[0]
        links = re.findall(r'href="([^"]+)"', summary)
        assert len(links) == 2 and all(link.startswith(gateway.base_url + "/videos/")
                                       for link in links)
        assert all(view.poster for view in panel.job_list.views)  # the rows' thumbnails


def test_the_kernel_reads_its_own_backend_and_nothing_else():
    backend = "http://192.168.1.20:8765"
    media = MediaSource(is_backend=lambda url: url.startswith(backend + "/"))
    for elsewhere in ("http://192.168.1.21:8765/videos/a.mp4", "http://127.0.0.1:8765/a.mp4",
                      "file:///etc/passwd"):
        with pytest.raises(MediaUnavailable):
            media.read_backend_url(elsewhere, 1024)
    with pytest.raises(MediaUnavailable):
        MediaSource().read_backend_url(backend + "/videos/a.mp4", 1024)  # no backend given
