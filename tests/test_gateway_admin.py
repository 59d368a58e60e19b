"""``/admin`` over HTTP, as a browser uses it: a cookie session, forms with their XSRF token,
a redirect back with what was done; and the pages around it (``/``, sign-in, the feed)."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import time
import zipfile

import pytest
import requests

from runway_widget.cli.commands import main
from runway_widget.errors import KeyRefusedError, QuotaExceededError
from runway_widget.gateway.db.roster import Limits
from tests.gateway_support import call, demo_gateway, participant

pytestmark = pytest.mark.timeout(180)

XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')


@pytest.fixture
def gateway(tmp_path):
    with demo_gateway(tmp_path, job_seconds=0.2) as gateway:
        gateway.admin_token = gateway.add_participant("teacher", admin=True)
        yield gateway


class Browser:
    """A cookie session signed in to /admin, posting its forms as a browser would."""

    def __init__(self, gateway) -> None:
        self.base = gateway.base_url
        self.session = requests.Session()
        landing = self.session.get(f"{self.base}/admin?token={gateway.admin_token}", timeout=10)
        assert landing.status_code == 200 and landing.url == f"{self.base}/admin"

    def page(self) -> str:
        reply = self.session.get(f"{self.base}/admin", timeout=10)
        assert reply.status_code == 200
        return reply.text

    def post(self, path: str, **fields: str) -> requests.Response:
        token = XSRF.search(self.page()).group(1)
        return self.session.post(
            f"{self.base}/admin/{path}", data={"_xsrf": token, **fields}, timeout=10,
            allow_redirects=False,
        )

    def said(self, path: str, **fields: str) -> str:
        """Post, follow the redirect, and return the message the page shows."""
        reply = self.post(path, **fields)
        assert reply.status_code == 303, reply.text
        page = self.session.get(self.base + reply.headers["Location"].split("#")[0], timeout=10)
        found = re.search(r'<p class="rw-said" data-kind="(\w+)"[^>]*>(.*?)</p>', page.text, re.S)
        assert found, page.text
        return f"{found.group(1)}: {found.group(2).strip()}"


def test_forms_need_their_xsrf_token_and_an_admin(gateway, tmp_path):
    alice = participant(gateway, tmp_path, "alice", jobs=1)
    browser = Browser(gateway)
    # a form from another site carries the session cookie but not the page's token
    forged = browser.session.post(f"{gateway.base_url}/admin/participant/2/quota",
                                  data={"jobs": "99"}, timeout=10)
    assert forged.status_code == 403 and "_xsrf" in forged.text
    assert gateway.roster.controls.participant(2)["jobs_limit"] == 1
    # a participant is no admin, whatever they send
    for who in (alice.api_key, None):
        reply = call(gateway, "POST", "/admin/participant/2/quota", who, data={"jobs": "99"})
        assert reply.status_code in (401, 403)
    assert gateway.roster.controls.participant(2)["jobs_limit"] == 1
    # a script with the admin token in its header needs no form token (no site can send it)
    reply = call(gateway, "POST", "/admin/participant/2/quota", gateway.admin_token,
                 data={"jobs": "4"}, allow_redirects=False)
    assert reply.status_code == 303
    assert gateway.roster.controls.participant(2)["jobs_limit"] == 4
    assert call(gateway, "POST", "/admin/participant/2/fly", gateway.admin_token).status_code == 404


def test_every_control_on_the_page(gateway, tmp_path):
    alice = participant(gateway, tmp_path, "alice", jobs=1, credits=20)
    alice.wait(alice.imagine(prompt="a red kite"), timeout=30, poll_interval=0.2)
    with pytest.raises(QuotaExceededError):
        alice.imagine(prompt="another")
    gateway.roster.add_join_code("ROOM-42", 30, Limits(jobs=3))
    browser = Browser(gateway)
    page = browser.page()
    assert "<code class=\"rw-code\">ROOM-42</code>" in page  # in full, for the instructor
    assert 'data-cell>jobs ×1</td>' in page

    assert browser.said("participant/2/quota", jobs="3", credits="", concurrent="1") == (
        "done: alice: quota now jobs 1/3, credits 5/∞, 1 at once")
    assert browser.said("participant/2/give-back", jobs="1", credits="5") == (
        "done: alice: 1 job and 5 credits given back; jobs 0/3, credits 0/∞, 1 at once")
    assert browser.said("participant/2/quota", jobs="many", credits="", concurrent="") == (
        "error: jobs: a whole number, 0 or more (not &#x27;many&#x27;)")
    assert browser.said("participant/2/revoke").startswith("done: revoked alice")
    with pytest.raises(KeyRefusedError, match="revoked"):
        alice.account()
    assert browser.said("participant/2/restore") == "done: restored alice"
    assert alice.account()["jobs_left"] == 3

    assert browser.said("code/1/close") == (
        "done: closed ROOM-42: nobody joins with it until you reopen it")
    assert browser.said("code/1/reopen") == "done: reopened ROOM-42"
    assert browser.said("code/1/seats", seats="40") == "done: ROOM-42: 40 seats"
    rotated = browser.said("code/1/rotate")
    new = re.search(r"ROOM-42 is now (\S+):", rotated).group(1)
    assert [code["code"] for code in gateway.roster.codes.listing()] == [new]
    assert browser.said("code/9/close") == "error: no such join code"

    assert browser.said("clip/1/hide").startswith("done: clip 1 hidden from the gallery")
    feed = call(gateway, "GET", "/gallery.json", gateway.admin_token).json()
    assert feed["clips"] == []
    assert browser.said("clip/1/unhide") == "done: clip 1 is in the gallery again"
    assert browser.said("clip/7/hide") == "error: no finished clip 7"


def test_the_page_and_the_report_command_show_the_same_numbers(gateway, tmp_path, capsys):
    alice = participant(gateway, tmp_path, "alice", jobs=1)
    alice.wait(alice.imagine(prompt="one"), timeout=30, poll_interval=0.2)
    for _ in range(3):
        with pytest.raises(QuotaExceededError):
            alice.imagine(prompt="more")
    assert main(["gateway", "report", "--json", "--db", str(gateway.engine.url)]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    from_page = call(gateway, "GET", "/admin/report.json", gateway.admin_token).json()
    assert from_page == from_cli
    assert from_cli[1]["over_jobs"] == 3 and from_cli[1]["finished"] == 1
    page = Browser(gateway).page()
    row = page.split('id="participant-2"')[1].split("</tr>")[0]
    cells = re.findall(r"data-cell>([^<]*)<", row)
    assert cells == ["1 / 1", "5 / ∞", "∞", "0", "1", "0", "0", "0", "jobs ×3"]
    csv_rows = list(csv.DictReader(io.StringIO(
        call(gateway, "GET", "/admin/report.csv", gateway.admin_token).text)))
    assert csv_rows[1]["over_jobs"] == "3"


def test_the_clips_download_as_one_zip(gateway, tmp_path):
    alice = participant(gateway, tmp_path, "alice")
    alice.wait(alice.imagine(prompt="a red kite"), timeout=30, poll_interval=0.2)
    deadline = time.monotonic() + 30
    while not gateway.pages.feed.listing():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    reply = Browser(gateway).session.get(f"{gateway.base_url}/admin/export.zip", timeout=30)
    assert reply.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        manifest = json.loads(archive.read("clips.json"))
        assert manifest[0]["prompt"] == "a red kite" and manifest[0]["participant"] == "alice"
        assert archive.read(manifest[0]["file"])[4:8] == b"ftyp"
    assert call(gateway, "GET", "/admin/export.zip", alice.api_key).status_code == 403


def test_sign_in_pages_say_what_is_wrong(gateway):
    bob = gateway.add_participant("bob")
    gateway.roster.revoke("bob")
    pages = {
        "none": call(gateway, "GET", "/admin"),
        "wrong": call(gateway, "GET", "/admin?token=rwg_not-a-token"),
        "revoked": call(gateway, "GET", f"/gallery?token={bob}"),
        "gallery": call(gateway, "GET", "/gallery"),
    }
    titles = {k: re.search(r"<title>(.*?)</title>", r.text).group(1) for k, r in pages.items()}
    assert titles == {
        "none": "Sign in to the workshop admin",
        "wrong": "Wrong token",
        "revoked": "Token revoked",
        "gallery": "Sign in to the gallery",
    }
    assert {reply.status_code for reply in pages.values()} == {401}
    assert "rwg_not-a-token" not in pages["wrong"].text


def test_the_home_page_says_what_this_is_and_how_to_join(gateway):
    home = requests.get(gateway.base_url + "/", timeout=10)
    assert home.status_code == 200 and "text/html" in home.headers["Content-Type"]
    assert f"runway-widget join {gateway.participant_urls[0]} CODE" in home.text
    assert "pip install runway_widget" in home.text
    scanned = requests.get(gateway.base_url + "/?code=<b>ROOM-42</b>", timeout=10)
    assert f"runway-widget join {gateway.participant_urls[0]} &lt;b&gt;ROOM-42&lt;/b&gt;" in (
        scanned.text)
    assert call(gateway, "GET", "/nothing-here").json()["errors"][0]["code"] == "not_found"


def test_the_projector_shows_the_open_codes_until_the_first_clip(gateway):
    gateway.roster.add_join_code("ROOM-42", 2, Limits())
    gateway.roster.add_join_code("SHUT-0001", 2, Limits())
    gateway.roster.codes.set_closed(2, True)
    page = call(gateway, "GET", "/gallery", gateway.admin_token).text
    assert f"runway-widget join {gateway.participant_urls[0]} ROOM-42" in page
    assert "SHUT-0001" not in page
    assert 'class="rw-qr" src="data:image/svg+xml' in page
    participant_page = call(gateway, "GET", "/gallery", gateway.add_participant("ann")).text
    assert "ROOM-42" not in participant_page  # codes are for the projector only


def test_a_hidden_clip_leaves_pages_that_show_it(gateway, tmp_path):
    alice = participant(gateway, tmp_path, "alice")
    alice.wait(alice.imagine(prompt="a red kite"), timeout=30, poll_interval=0.2)
    deadline = time.monotonic() + 30
    while not (feed := call(gateway, "GET", "/gallery.json", gateway.admin_token).json())["clips"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cursor = feed["cursor"]
    gateway.pages.feed.set_hidden(1, True)
    later = call(gateway, "GET", f"/gallery.json?since={cursor}", gateway.admin_token).json()
    assert later["clips"] == [] and later["removed"] == ["job-1"]
    gateway.pages.feed.set_hidden(1, False)
    again = call(gateway, "GET", f"/gallery.json?since={cursor}", gateway.admin_token).json()
    assert [clip["id"] for clip in again["clips"]] == ["job-1"] and again["removed"] == []


def test_a_job_gets_the_same_labels_from_any_client(gateway, tmp_path):
    alice = participant(gateway, tmp_path, "alice")
    bare = alice.imagine(prompt="as the CLI sends it")  # only what was given
    full = alice.imagine(prompt="as the panel sends it", generation_type="text2video",
                         model="gen3a_turbo", duration=5, aspect_ratio="16:9")
    for task_id in (bare, full):
        alice.wait(task_id, timeout=30, poll_interval=0.2)
    deadline = time.monotonic() + 30
    while len(gateway.pages.feed.listing()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    labels = [clip["settings"] for clip in gateway.pages.feed.listing()]
    assert labels[0] == labels[1] == [
        ["type", "text2video"], ["model", "gen3a_turbo"], ["seconds", "5"], ["ratio", "16:9"]]


def test_a_revoked_token_is_logged_with_its_name(gateway, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="runway_widget.gateway.access")
    bob = participant(gateway, tmp_path, "bob")
    gateway.roster.revoke("bob")
    assert call(gateway, "GET", "/account", bob.api_key).status_code == 401
    deadline = time.monotonic() + 10  # the line is written once the reply has gone
    while not (lines := [json.loads(r.getMessage()) for r in caplog.records
                         if '"/account"' in r.getMessage()]):
        assert time.monotonic() < deadline, "no access log line"
        time.sleep(0.05)
    assert [(line["participant"], line["status"]) for line in lines] == [("bob", 401)]
