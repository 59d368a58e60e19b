"""The workshop gateway on a real JupyterHub, end to end.

One hub (DummyAuthenticator, SimpleLocalProcessSpawner, configurable-http-proxy) loads the
instructor's `docs/jupyterhub_config.py` unchanged; the gateway runs as its managed service
on the demo upstream. alice and bob each get a server and a kernel, and their notebooks'
code has no key: `ApiframeClient()` finds the gateway and the server's hub token by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_support as ui
import hub_harness
import nbformat
import pytest

pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]

ROOM = {
    "defaults": {"jobs": 3, "credits": 100, "concurrent": 2},
    "groups": {"small": {"jobs": 1}},
}
USERS = ("alice", "bob")
ADMIN = "instructor"

GENERATE = """
import json, os, time
from runway_widget import ApiframeClient
from runway_widget.client.credentials import resolve

started = time.monotonic()
client = ApiframeClient()
task_id = client.imagine(prompt={prompt!r})
task = client.wait(task_id, timeout=90, poll_interval=0.25)
seconds = time.monotonic() - started
print(json.dumps({{
    "task_id": task_id, "status": task.status, "video_url": task.video_url,
    "seconds": seconds, "account": client.account(), "base_url": client.base_url,
    "source": resolve().source, "key_in_env": "APIFRAME_API_KEY" in os.environ,
    "clip_head": client.session.get(task.video_url, timeout=10).content[4:8].decode("latin-1"),
}}))
"""

FETCH_AS_OTHER = """
import json, uuid
from runway_widget import ApiframeClient
from runway_widget.errors import TaskNotFoundError

client = ApiframeClient()
seen = {{}}
for label, task_id in (("other", {task_id!r}), ("unknown", str(uuid.uuid4()))):
    try:
        seen[label] = ["answered", client.fetch(task_id).status]
    except TaskNotFoundError as exc:
        seen[label] = [type(exc).__name__, exc.status_code, str(exc).replace(task_id, "ID")]
print(json.dumps(seen))
"""

OVER_QUOTA = """
import json
from runway_widget import ApiframeClient
from runway_widget.errors import QuotaExceededError

client = ApiframeClient()
outcome = {"first": client.imagine(prompt="a paper boat")}
try:
    client.imagine(prompt="one more paper boat")
    outcome["second"] = "accepted"
except QuotaExceededError as exc:
    outcome["second"] = [type(exc).__name__, str(exc)]
outcome["account"] = client.account()
print(json.dumps(outcome))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hub_harness.JupyterHubUnderTest]:
    missing = hub_harness.missing_requirements()
    if missing:
        pytest.skip("a real JupyterHub needs " + "; ".join(missing))
    state = tmp_path_factory.mktemp("jupyterhub")
    hub = hub_harness.JupyterHubUnderTest(
        state, gateway_config=ROOM, admins=[ADMIN], groups={"small": ["bob"]}
    )
    started = time.monotonic()
    hub.start()
    try:
        hub.start_servers(USERS)
        print(f"hub and two servers ready in {time.monotonic() - started:.1f} s")
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def kernels(hub: hub_harness.JupyterHubUnderTest) -> dict[str, str]:
    return {user: hub.start_kernel(user) for user in USERS}


@pytest.fixture(scope="module")
def alices_clip(hub: hub_harness.JupyterHubUnderTest, kernels: dict[str, str]) -> dict[str, Any]:
    result = hub.execute("alice", kernels["alice"], GENERATE.format(prompt="a lighthouse at dusk"))
    assert result.error is None, (result.error, result.traceback, hub.log_tail())
    return result.last_json()


def _gateway(hub: hub_harness.JupyterHubUnderTest, path: str, **kwargs: Any) -> tuple[int, Any]:
    return hub.request("GET", hub.gateway_direct_url + path, **kwargs)


def test_the_hub_runs_the_gateway_from_the_instructors_snippet(
    hub: hub_harness.JupyterHubUnderTest,
) -> None:
    assert hub_harness.SERVICE in hub.api("GET", "/services")
    status, health = hub.request("GET", hub.gateway_url + "health")  # through the hub's proxy
    assert status == 200 and health["ok"], health


def test_a_kernel_generates_through_the_gateway_with_nothing_typed(
    hub: hub_harness.JupyterHubUnderTest, alices_clip: dict[str, Any]
) -> None:
    print(f"alice: Generate -> first clip in {alices_clip['seconds']:.1f} s (goal <= 10 s)")
    assert alices_clip["status"] == "finished"
    assert alices_clip["source"] == "jupyterhub"
    assert not alices_clip["key_in_env"]
    assert alices_clip["base_url"] == hub.gateway_direct_url.rstrip("/")
    assert alices_clip["video_url"].startswith(hub.gateway_direct_url + "videos/")
    assert alices_clip["clip_head"] == "ftyp"  # an MP4, served by the gateway
    account = alices_clip["account"]
    assert account["email"] == "alice"
    assert account["jobs_left"] == ROOM["defaults"]["jobs"] - 1
    assert alices_clip["seconds"] < 60  # sanity bound only; the figure is printed above


def test_bob_cannot_tell_alices_task_from_an_unknown_one(
    hub: hub_harness.JupyterHubUnderTest, kernels: dict[str, str], alices_clip: dict[str, Any]
) -> None:
    code = FETCH_AS_OTHER.format(task_id=alices_clip["task_id"])
    result = hub.execute("bob", kernels["bob"], code)
    assert result.error is None, (result.error, result.traceback)
    seen = result.last_json()
    print(seen)
    assert seen["other"][0] == "TaskNotFoundError"
    assert seen["other"] == seen["unknown"]


def test_a_group_quota_ends_in_the_quota_error(
    hub: hub_harness.JupyterHubUnderTest, kernels: dict[str, str]
) -> None:
    result = hub.execute("bob", kernels["bob"], OVER_QUOTA)
    assert result.error is None, (result.error, result.traceback)
    outcome = result.last_json()
    print(outcome)
    assert outcome["first"]
    assert outcome["second"][0] == "QuotaExceededError"
    assert "quota" in outcome["second"][1] and "the 1 job of your quota" in outcome["second"][1]
    assert outcome["account"]["email"] == "bob"
    assert outcome["account"]["jobs_left"] == 0


def test_hub_tokens_in_every_header_form_and_refused_without_the_grant(
    hub: hub_harness.JupyterHubUnderTest,
) -> None:
    token = hub.user_token("alice")
    for header in (token, f"token {token}", f"Bearer {token}"):
        status, account = _gateway(hub, "account", authorization=header)
        assert status == 200 and account["email"] == "alice", (header[:6], status, account)
    narrow = hub.user_token("alice", scopes=["read:users:name!user=alice"])
    for header in (narrow, None, "token not-a-hub-token"):
        status, body = _gateway(hub, "account", authorization=header)
        assert status == 401, (status, body)
        assert token not in json.dumps(body)


def test_the_hub_admin_reads_the_report_and_participants_do_not(
    hub: hub_harness.JupyterHubUnderTest, alices_clip: dict[str, Any]
) -> None:
    admin = hub.user_token(ADMIN)
    status, rows = _gateway(hub, "admin/report.json", token=admin)
    assert status == 200, rows
    by_name = {row["name"]: row for row in rows}
    assert by_name["alice"]["finished"] >= 1 and by_name["alice"]["jobs_limit"] == 3
    assert by_name["bob"]["jobs_limit"] == 1  # the group override
    status, csv_text = hub.request("GET", hub.gateway_url + "admin/report.csv", token=admin)
    assert status == 200 and csv_text.splitlines()[0].startswith("name,")
    status, _ = _gateway(hub, "admin/report.json", token=hub.user_token("alice"))
    assert status == 403


def test_the_hub_admin_changes_a_quota_that_the_room_config_then_leaves_alone(
    hub: hub_harness.JupyterHubUnderTest,
) -> None:
    import requests

    admin = hub.user_token(ADMIN)
    bob = hub.user_token("bob")
    _gateway(hub, "account", token=bob)  # bob is known to the gateway
    status, rows = _gateway(hub, "admin/report.json", token=admin)
    bob_id = {row["name"]: row["id"] for row in rows}["bob"]

    def set_jobs(jobs: str, token: str) -> int:
        reply = requests.post(
            f"{hub.gateway_direct_url}admin/participant/{bob_id}/quota",
            data={"jobs": jobs},
            headers={"Authorization": f"token {token}"},
            allow_redirects=False,
            timeout=30,
        )
        return reply.status_code

    assert set_jobs("9", bob) == 403  # a participant is no admin
    try:
        assert set_jobs("5", admin) == 303
        for _ in range(2):  # each request enrolls bob again with the config's quota
            status, account = _gateway(hub, "account", token=bob)
            assert status == 200 and account["jobs_left"] >= 4, account
        status, rows = _gateway(hub, "admin/report.json", token=admin)
        assert {row["name"]: row["jobs_limit"] for row in rows}["bob"] == 5
    finally:
        set_jobs("1", admin)  # as the group gives it, for the other tests


def test_the_gallery_feed_shows_a_participant_their_own_and_the_admin_everything(
    hub: hub_harness.JupyterHubUnderTest, alices_clip: dict[str, Any]
) -> None:
    status, own = _gateway(hub, "gallery.json", token=hub.user_token("bob"))
    assert status == 200 and own["scope"] == "own"
    assert all(clip["participant"] == "bob" for clip in own["clips"])
    status, room = _gateway(hub, "gallery.json", token=hub.user_token(ADMIN))
    assert status == 200 and room["scope"] == "room"
    assert "a lighthouse at dusk" in [clip["prompt"] for clip in room["clips"]]


def test_a_browser_is_sent_through_the_hubs_oauth(hub: hub_harness.JupyterHubUnderTest) -> None:
    status, body = hub.request("GET", hub.gateway_url + "gallery")
    # urllib follows the redirects: to the hub's authorize URL, then to its login page.
    assert status == 200 and "Sign in" in str(body), str(body)[:300]


# -- in a real browser: the hub's login, its OAuth, and the panel in a participant's lab -------

PANEL_NOTEBOOK = "workshop.ipynb"
NEW_PROMPT = "a comet over the sea, pressed in the panel"
# The panel also lists earlier jobs: find the video whose own card (the smallest box naming
# exactly one task) shows the new prompt.
CARD_VIDEO_INDEX = """
prompt => [...document.querySelectorAll('.rw-panel video')].findIndex(video => {
  for (let node = video.parentElement; node; node = node.parentElement) {
    const tasks = (node.innerText || '').match(/task [0-9A-Za-z_-]{16,}/g) || [];
    if (tasks.length > 1) return false;
    if (tasks.length === 1) return node.innerText.includes(prompt) && video.readyState >= 2;
  }
  return false;
})
"""
CARD_PLAYS = f"prompt => ({CARD_VIDEO_INDEX.strip()})(prompt) >= 0"


def _signed_in(browser: Any, hub: hub_harness.JupyterHubUnderTest, user: str) -> Any:
    """A browser page logged in to the hub as `user` (DummyAuthenticator takes any password)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{hub.public_url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url, wait_until="commit")
    return page


@pytest.mark.browser
def test_the_gallery_signs_in_through_the_hub_and_shows_what_each_may_see(
    hub: hub_harness.JupyterHubUnderTest, browser: Any, alices_clip: dict[str, Any]
) -> None:
    alice = _signed_in(browser, hub, "alice")
    alice.goto(hub.gateway_url + "gallery")  # -> the hub's OAuth -> back to the gallery
    alice.wait_for_selector(".rw-status[data-state='live']")
    assert alice.url == hub.gateway_url + "gallery"
    assert alice.inner_text(".rw-scope") == "clips by alice"
    card = alice.locator(".rw-clip", has_text="a lighthouse at dusk")
    card.wait_for()
    playback = ui.play(card.locator("video"))
    assert playback.get("readyState", 0) >= 2 and playback["after"] > playback["before"], playback
    assert alice.locator(".rw-clip .rw-who").all_inner_texts() == ["alice"] * alice.locator(
        ".rw-clip").count()
    alice.goto(hub.gateway_url + "admin")
    assert "only the workshop" in alice.inner_text("main")
    alice.context.close()

    teacher = _signed_in(browser, hub, ADMIN)
    teacher.goto(hub.gateway_url + "gallery")
    teacher.wait_for_selector(".rw-status[data-state='live']")
    assert teacher.inner_text(".rw-scope") == "the whole room"
    teacher.locator(".rw-clip .rw-who", has_text="bob").first.wait_for()  # the feed is live
    assert "bob" in teacher.locator(".rw-clip .rw-who").all_inner_texts()
    teacher.goto(hub.gateway_url + "admin")
    assert {"alice", "bob"} <= set(teacher.locator("tr[data-participant]").evaluate_all(
        "rows => rows.map(r => r.dataset.participant)"))
    for jobs in ("2", "1"):  # the hub's XSRF token rides in the form; back as the group has it
        row = teacher.locator("tr[data-participant='bob']")
        row.locator("summary", has_text="Manage").click()
        row.locator("input[name=jobs]").first.fill(jobs)
        row.locator("button", has_text="Save quota").click()
        said = teacher.locator(".rw-said[data-kind='done']")
        said.wait_for()
        assert "bob: quota now jobs" in said.inner_text() and f"/{jobs}," in said.inner_text()
    teacher.context.close()


@pytest.mark.browser
def test_a_participant_presses_generate_in_the_panel_with_nothing_typed(
    hub: hub_harness.JupyterHubUnderTest, browser: Any, tmp_path: Path
) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from runway_widget import RunwayPanel\n\nRunwayPanel()")])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                       "display_name": "Python 3 (ipykernel)"}
    nbformat.write(notebook, hub.state_dir / "home" / "alice" / PANEL_NOTEBOOK)
    page = _signed_in(browser, hub, "alice")
    try:
        page.goto(f"{hub.public_url}/user/alice/lab/tree/{PANEL_NOTEBOOK}?reset")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook")
        _wait_for_kernel(page)
        _run_first_cell(page)
        header = page.locator(".rw-panel .rw-header").first
        header.get_by_text("alice's quota:").wait_for()
        print("panel header:", header.inner_text().replace("\n", " | "))
        page.locator(".rw-panel textarea").first.fill(NEW_PROMPT)
        started = time.monotonic()
        page.locator(".rw-panel button.widget-button", has_text="Generate").first.click()
        page.wait_for_function(CARD_PLAYS, arg=NEW_PROMPT, timeout=90_000)
        seconds = time.monotonic() - started
        video = page.locator(".rw-panel video").nth(
            page.evaluate(CARD_VIDEO_INDEX, NEW_PROMPT))
        print(f"hub participant: Generate -> playable clip in the panel {seconds:.1f} s "
              "(goal <= 10 s)")
        playback = ui.play(video)
        assert playback["readyState"] >= 2 and playback["after"] > playback["before"], playback
        assert "DEMO" not in header.inner_text()
    finally:
        page.screenshot(path=str(tmp_path / "hub_panel.png"))
        print(f"last page: {tmp_path / 'hub_panel.png'}")
        page.context.close()


def _run_first_cell(page: Any, attempts: int = 3) -> None:
    """Shift+Enter in the first cell until the panel shows (a lab still settling may drop one)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first
    for _ in range(attempts):
        _accept_dialogs(page)  # "Select Kernel" may come after the kernel went idle
        try:
            if cell.locator(".jp-InputPrompt").inner_text().strip() in ("[ ]:", ""):
                ui.run_cell(page, cell, timeout=15_000)
            page.wait_for_selector(".rw-panel textarea", timeout=30_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError("the panel never showed: " + cell.inner_text()[:500])


def _wait_for_kernel(page: Any, timeout: float = 90.0) -> None:
    """Until the notebook's kernel is idle, accepting "Select Kernel" if the lab asks."""
    deadline = time.monotonic() + timeout
    while not page.locator(ui.KERNEL_IDLE).count():
        assert time.monotonic() < deadline, "the notebook's kernel never became idle"
        _accept_dialogs(page)
        page.wait_for_timeout(250)


def _accept_dialogs(page: Any) -> None:
    """Accept a dialog the lab shows (the kernel to start), which would take every click."""
    accept = page.locator(".jp-Dialog button.jp-mod-accept")
    if accept.count():
        accept.first.click()


def test_the_hub_stops_the_gateway_promptly(hub: hub_harness.JupyterHubUnderTest) -> None:
    started = time.monotonic()
    hub.stop()
    seconds = time.monotonic() - started
    print(f"hub, servers and gateway stopped in {seconds:.1f} s")
    assert seconds < 25, "the gateway ignored SIGINT/SIGTERM (the hub waits 30 s, then kills)"
    assert not hub_harness.JupyterHubUnderTest._url_answers(hub.gateway_direct_url + "health")
