"""Slow and failing work around the panel: lanes, hanging servers, trickled clips, the history."""

from __future__ import annotations

import threading
import time

import pytest
from hostile_server import HostileServer, response_bytes, trickle
from waiting import wait_for
from widget_helpers import finish, panel_factory, playing_bytes

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.store import JobStore
from runway_widget.widget.background import ACCOUNT_LANES, Lane, account_lane
from runway_widget.widget.media.source import MediaSource, MediaTooLarge, MediaUnavailable


@pytest.fixture
def make_panel(panel_client, tmp_path, clock):
    yield from panel_factory(panel_client, tmp_path, clock)


def test_a_lane_queues_each_key_once_refuses_when_full_and_drops_stale_work(clock):
    lane = Lane("test", workers=1, queue_limit=2, max_wait=10.0, clock=clock)
    release, started = threading.Event(), threading.Event()
    ran: list[str] = []
    try:
        assert lane.submit("a", lambda: (started.set(), release.wait(10), ran.append("a")))
        started.wait(10)
        assert lane.submit("a", ran.append, "a again")  # started: may be asked for again
        assert not lane.submit("a", ran.append, "a thrice")  # already queued: not twice
        assert lane.submit("b", ran.append, "b")
        assert not lane.submit("c", ran.append, "c")  # full
        clock.advance(11)  # the queued work has now waited longer than max_wait
        release.set()
        wait_for(lambda: lane.pending() == 0, "the lane to drain")
        assert ran == ["a"]
        assert lane.submit("c", ran.append, "c")
        wait_for(lambda: "c" in ran, "new work to run")
    finally:
        lane.shutdown()


def test_a_lane_tells_of_work_it_will_never_run(clock):
    lane = Lane("test", workers=1, queue_limit=2, max_wait=10.0, clock=clock)
    release, started = threading.Event(), threading.Event()
    dropped: list[str] = []
    try:
        assert lane.submit("a", lambda: (started.set(), release.wait(10)))
        started.wait(10)
        assert lane.submit("b", print, dropped=lambda: dropped.append("b"))
        assert not lane.submit("b", print, dropped=lambda: dropped.append("b again"))  # queued
        assert lane.submit("c", print, dropped=lambda: dropped.append("c"))
        assert not lane.submit("d", print, dropped=lambda: dropped.append("d"))  # full
        assert dropped == ["d"]
        clock.advance(11)  # b and c have now waited longer than max_wait
        release.set()
        wait_for(lambda: len(dropped) == 3, "the stale work to be dropped")
        assert sorted(dropped) == ["b", "c", "d"]
    finally:
        lane.shutdown()


def test_a_trickled_clip_cannot_hold_a_media_read_past_its_deadline():
    clip = response_bytes(200, b"\x00" * 4096, {"Content-Type": "video/mp4"})
    with HostileServer() as bad:
        bad.route("/videos/a.mp4", trickle(clip, every=0.05, forever=True))
        media = MediaSource(lambda url: url.startswith(bad.base_url), deadline=1.0)
        started = time.monotonic()
        with pytest.raises(MediaUnavailable, match="within 1 s"):
            media.read_url(bad.base_url + "/videos/a.mp4", 1024 * 1024)
        assert time.monotonic() - started < 5
        media.close()


def test_a_media_read_stops_at_its_size_limit():
    with HostileServer() as bad:
        bad.route("/videos/big.mp4", lambda h: h.wfile.write(
            response_bytes(200, b"\x00" * 50_000, {"Content-Type": "video/mp4"})))
        media = MediaSource(lambda url: url.startswith(bad.base_url))
        with pytest.raises(MediaTooLarge):
            media.read_url(bad.base_url + "/videos/big.mp4", 10_000)
        media.close()


def test_panels_whose_account_hangs_starve_neither_videos_nor_other_backends(
    make_panel, tmp_path, clock
):
    with HostileServer() as bad:
        bad.route("/account", lambda handler: handler.owner.closing.wait(60))
        hanging = [
            make_panel(client=ApiframeClient(api_key="k", base_url=bad.base_url, max_retries=0,
                                             store=JobStore(tmp_path / f"hang{i}.jsonl")))
            for i in range(3)
        ]
        wait_for(lambda: bad.count("/account") >= 1, "an account call to hang")
        panel = make_panel()
        panel.form.prompt.value = "a clip while other panels wait on their accounts"
        job = panel.submit()
        finish(panel, job, clock)  # the clip's bytes arrived
        assert playing_bytes(panel.view(job))
        credits = panel.header.credits
        wait_for(lambda: "credits" in credits.value and "…" not in credits.value,
                 "this panel's credits")
        assert all("…" in p.header.credits.value for p in hanging)  # still waiting


def test_a_history_that_cannot_be_written_is_a_banner(make_panel, demo_like, client_for,
                                                      tmp_path, clock):
    blocker = tmp_path / "a-file"
    blocker.write_text("where the history's folder should be")
    client = client_for(demo_like, store=JobStore(blocker / "jobs.jsonl"), demo=True)
    panel = make_panel(client)
    panel.form.prompt.value = "a job the history cannot keep"
    job = panel.submit()
    assert job is not None
    assert "history is not being kept" in panel.banner
    assert "rw-banner-warn" in panel.banner and "RUNWAY_WIDGET_HOME" in panel.banner
    panel.hide_banner()
    finish(panel, job, clock)  # the job itself runs and plays
    assert "history is not being kept" in panel.banner  # the status could not be kept either


def test_on_a_dashboard_save_brings_the_clip_to_the_browser(make_panel, tmp_path, clock):
    panel = make_panel(dashboard=True)
    panel.form.prompt.value = "a clip for a visitor"
    job = panel.submit()
    finish(panel, job, clock)
    view = panel.view(job)
    assert view.dashboard
    view.act("close")
    view.act("save")  # the view's script then offers the bytes as a download
    wait_for(lambda: playing_bytes(view), "the clip's bytes in the visitor's page")
    assert not (tmp_path / "videos").exists()  # nothing written on the server


def test_a_new_backend_never_waits_behind_a_retired_backends_hung_call():
    hung, release = threading.Event(), threading.Event()
    account_lane("http://hung.invalid").submit("credits", lambda: (hung.set(), release.wait(30)))
    try:
        assert hung.wait(5)
        for i in range(ACCOUNT_LANES - 1):  # the hung backend is now the least recently used
            account_lane(f"http://other-{i}.invalid")
        ran = threading.Event()
        account_lane("http://newcomer.invalid").submit("credits", ran.set)
        assert ran.wait(5)  # at once, on a lane of its own
    finally:
        release.set()
