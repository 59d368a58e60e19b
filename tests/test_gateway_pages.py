"""The gateway's pages in token mode: the gallery feed and its cursor, sign-in, /admin."""

from __future__ import annotations

import json
import time

import pytest
import requests
from sqlalchemy import insert

from runway_widget.gateway.db.database import jobs
from runway_widget.gateway.db.roster import Limits
from runway_widget.gateway.room_config import RoomConfig
from runway_widget.gateway.web.gallery import OVERLAP, ClipFeed, parse_cursor
from tests.gateway_support import call, demo_gateway, participant

pytestmark = pytest.mark.timeout(120)

TRICKY = '<img src=x onerror="alert(1)"> & "quotes"'


@pytest.fixture
def gateway(tmp_path):
    with demo_gateway(tmp_path, job_seconds=0.3) as gateway:
        yield gateway


def _feed(gateway, token, since=None):
    reply = call(gateway, "GET", "/gallery.json" + (f"?since={since}" if since else ""), token)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _wait_for_clips(gateway, token, count, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        feed = _feed(gateway, token)
        if len(feed["clips"]) >= count:
            return feed
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} clips after {timeout} s: {feed}")


def test_finished_clips_reach_the_feed_with_prompt_owner_settings_and_a_playable_video(
    gateway, tmp_path
):
    admin = gateway.add_participant("teacher", admin=True)
    alice = participant(gateway, tmp_path, "alice")
    bob = participant(gateway, tmp_path, TRICKY)
    first = alice.imagine(prompt="a lighthouse", duration=10, aspect_ratio="16:9")
    alice.wait(first, timeout=60, poll_interval=0.2)
    second = bob.imagine(prompt=TRICKY)
    bob.wait(second, timeout=60, poll_interval=0.2)

    feed = _wait_for_clips(gateway, admin, 2)
    assert feed["scope"] == "room"
    newest, older = feed["clips"]
    assert (newest["participant"], newest["prompt"]) == (TRICKY, TRICKY)  # data, not markup
    assert (older["participant"], older["prompt"]) == ("alice", "a lighthouse")
    assert ["seconds", "10"] in older["settings"] and ["ratio", "16:9"] in older["settings"]
    assert newest["finished_at"] >= older["finished_at"]
    assert older["video_url"].startswith("videos/") and older["video_url"].endswith(".mp4")
    clip = requests.get(f"{gateway.base_url}/{older['video_url']}", timeout=10,
                        headers={"Range": "bytes=0-7"})
    assert clip.status_code == 206 and clip.content[4:8] == b"ftyp"


def test_a_participant_sees_their_own_clips_unless_the_room_is_shared(tmp_path):
    for shared in (False, True):
        folder = tmp_path / str(shared)
        folder.mkdir()
        with demo_gateway(folder, job_seconds=0.3, room=RoomConfig(gallery_room=shared)) as gateway:
            alice = participant(gateway, folder, "alice")
            bob_token = gateway.add_participant("bob")
            alice.wait(alice.imagine(prompt="alice's clip"), timeout=60, poll_interval=0.2)
            admin = gateway.add_participant("teacher", admin=True)
            _wait_for_clips(gateway, admin, 1)
            feed = _feed(gateway, bob_token)
            assert feed["scope"] == ("room" if shared else "own")
            assert len(feed["clips"]) == (1 if shared else 0)
            assert len(_feed(gateway, alice.api_key)["clips"]) == 1


def test_the_cursor_returns_only_recent_clips_and_never_unstored_or_failed_ones(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        alice_id = gateway.roster.enroll("alice", Limits())
        bob_id = gateway.roster.enroll("bob", Limits())
        now = time.time()
        rows = [
            (alice_id, "finished", "stored", now - 60),
            (alice_id, "finished", "stored", now - 30),
            (bob_id, "finished", "stored", now),
            (bob_id, "finished", None, now),  # still being copied in
            (bob_id, "finished", "", now),  # the copy failed
            (bob_id, "failed", None, now),
        ]
        with gateway.engine.begin() as conn:
            for number, (owner, state, path, at) in enumerate(rows):
                conn.execute(insert(jobs).values(
                    participant_id=owner, task_id=f"t{number}", state=state, credits=5,
                    request=json.dumps({"prompt": f"clip {number}"}),
                    video_key=f"key-{number:013d}", video_path=path and f"/clips/{number}.mp4",
                    created_at=at, updated_at=at,
                ))
        feed = ClipFeed(gateway.engine)
        everything = feed.clips(owner=None, since=None)
        assert [c["prompt"] for c in everything["clips"]] == ["clip 2", "clip 1", "clip 0"]
        assert float(everything["cursor"]) == pytest.approx(now)
        recent = feed.clips(owner=None, since=now - 30 + OVERLAP - 1)
        assert [c["prompt"] for c in recent["clips"]] == ["clip 2", "clip 1"]  # the overlap
        assert feed.clips(owner=None, since=now + OVERLAP)["clips"] == []
        assert feed.clips(owner=None, since=now + OVERLAP)["cursor"] == repr(now + OVERLAP)
        assert [c["prompt"] for c in feed.clips(owner=alice_id, since=None)["clips"]] == [
            "clip 1", "clip 0"]
        assert len(feed.clips(owner=None, since=None, limit=1)["clips"]) == 1


@pytest.mark.parametrize("raw", [None, "", "abc", "nan", "-1", "inf" * 20, "1e400x"])
def test_unusable_cursors_mean_from_the_start(raw):
    assert parse_cursor(raw) is None


def test_a_browser_signs_in_once_with_a_token_that_leaves_the_address(gateway, tmp_path):
    admin = gateway.add_participant("teacher", admin=True)
    assert call(gateway, "GET", "/gallery").status_code == 401
    assert "?token=" in call(gateway, "GET", "/gallery").text
    assert call(gateway, "GET", "/gallery?token=not-a-token").status_code == 401
    feed = call(gateway, "GET", "/gallery.json")
    assert feed.status_code == 401 and feed.json() == {"errors": [{"msg": "sign in first"}]}

    browser = requests.Session()
    landing = browser.get(f"{gateway.base_url}/gallery?token={admin}", allow_redirects=False,
                          timeout=10)
    assert landing.status_code == 302 and landing.headers["Location"] == "/gallery"
    cookie = landing.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and admin not in cookie
    page = browser.get(f"{gateway.base_url}/gallery", timeout=10)
    assert page.status_code == 200 and "the whole room" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert browser.get(f"{gateway.base_url}/gallery.json", timeout=10).json()["scope"] == "room"

    gateway.roster.revoke("teacher")
    assert browser.get(f"{gateway.base_url}/gallery.json", timeout=10).status_code == 401


def test_admin_pages_are_for_admins_and_escape_what_participants_typed(gateway, tmp_path):
    admin = gateway.add_participant("teacher", admin=True)
    tricky = participant(gateway, tmp_path, TRICKY, jobs=2)
    tricky.imagine(prompt="a cat")
    assert call(gateway, "GET", "/admin", tricky.api_key).status_code == 403
    assert call(gateway, "GET", "/admin/report.json", tricky.api_key).status_code == 403
    assert call(gateway, "GET", "/admin").status_code == 401

    page = call(gateway, "GET", "/admin", admin)
    assert page.status_code == 200
    assert TRICKY not in page.text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page.text
    rows = call(gateway, "GET", "/admin/report.json", admin).json()
    assert {row["name"]: row["jobs_used"] for row in rows} == {"teacher": 0, TRICKY: 1}
    csv_reply = call(gateway, "GET", "/admin/report.csv", admin)
    assert csv_reply.headers["Content-Type"].startswith("text/csv")
    header, *lines = csv_reply.text.splitlines()
    assert header.startswith("name,revoked,jobs_used,jobs_limit")
    quoted = '"<img src=x onerror=""alert(1)""> & ""quotes""",'
    assert any(line.startswith(quoted) for line in lines)


def test_only_the_pages_stylesheet_and_script_are_served_as_assets(gateway):
    assert call(gateway, "GET", "/assets/pages.css").status_code == 200
    assert call(gateway, "GET", "/assets/gallery.js").status_code == 200
    for path in ("/assets/gallery.html", "/assets/../pages.py", "/assets/%2e%2e/app.py"):
        assert call(gateway, "GET", path).status_code in (403, 404), path
