"""``/admin`` in a real browser (headless Chromium), as the instructor uses it during a session.

The instructor signs in with an admin token, raises a participant's quota, closes a join
code and hides a clip from the gallery, each with the page's own forms; meanwhile the
numbers change without a reload, and a projector's gallery drops the hidden clip. The
screenshots go to a temporary folder (``RUNWAY_WIDGET_SCREENSHOTS=docs``: to ``docs/``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_support as ui
import pytest

from runway_widget.errors import QuotaExceededError
from runway_widget.gateway.db.roster import Limits
from tests.gateway_support import demo_gateway, participant

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PROMPTS = ("a lighthouse in a storm", "a paper boat on a rainy street", "neon koi at night")


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Any]:
    """A gateway with a join code, three participants and their clips, alice over quota."""
    with demo_gateway(tmp_path, job_seconds=0.3) as gateway:
        gateway.roster.add_join_code("ROOM-42", 30, Limits(jobs=3))
        gateway.admin_token = gateway.add_participant("teacher", admin=True)
        people = {
            name: participant(gateway, tmp_path, name, jobs=1, credits=50)
            for name in ("alice", "bob", "chloé")
        }
        for client, prompt in zip(people.values(), PROMPTS, strict=True):
            client.wait(client.imagine(prompt=prompt), timeout=60, poll_interval=0.2)
        for _ in range(3):
            with pytest.raises(QuotaExceededError):
                people["alice"].imagine(prompt="one more")
        deadline = time.monotonic() + 30
        while len(gateway.pages.feed.listing()) < len(people):
            assert time.monotonic() < deadline, "the clips were not stored"
            time.sleep(0.1)
        gateway.people = people
        yield gateway


def _page(browser: Any, url: str, errors: list[str], width: int = 1440) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": width, "height": 1000}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return context, page


def test_the_instructor_raises_a_quota_closes_a_code_and_hides_a_clip(
    browser: Any, room: Any, tmp_path: Path
) -> None:
    errors: list[str] = []
    admin, page = _page(browser, f"{room.base_url}/admin?token={room.admin_token}", errors)
    projector, gallery = _page(
        browser, f"{room.base_url}/gallery?token={room.admin_token}", errors, 1920
    )
    try:
        assert page.url == f"{room.base_url}/admin"  # the token left the address bar
        alice = page.locator("#participant-2")
        assert "alice" in alice.inner_text()
        assert "jobs ×3" in alice.inner_text()  # refused three times, and shown so
        page.screenshot(path=str(ui.screenshot_path("admin.png", tmp_path)), full_page=True)

        # raise alice's quota: Manage, 5 jobs, Save
        alice.locator("summary", has_text="Manage").click()
        alice.locator("input[name=jobs]").first.fill("5")
        page.screenshot(path=str(ui.screenshot_path("admin-manage.png", tmp_path)), full_page=True)
        alice.locator("button", has_text="Save quota").click()
        page.wait_for_selector(".rw-said[data-kind=done]")
        assert "alice: quota now jobs 1/5" in page.locator(".rw-said").inner_text()
        assert "1 / 5" in page.locator("#participant-2 td").nth(1).inner_text()
        room.people["alice"].imagine(prompt="a second lighthouse")  # within the new quota

        # close the join code
        code = page.locator("#code-1")
        code.locator("button", has_text="Close").click()
        page.wait_for_selector(".rw-said[data-kind=done]")
        assert "closed ROOM-42" in page.locator(".rw-said").inner_text()
        assert page.locator("#code-1 td").nth(1).inner_text() == "closed"
        assert room.roster.codes.listing()[0]["closed"]

        # hide bob's clip: the projector's gallery drops it without a reload
        gallery.wait_for_function("() => document.querySelectorAll('.rw-clips > li').length >= 3")
        gallery.evaluate("() => { window.sameDocument = true; }")
        bob_clip = page.locator(".rw-admin-clips li", has_text=PROMPTS[1])
        bob_clip.locator("button", has_text="Hide").click()
        page.wait_for_selector(".rw-said[data-kind=done]")
        assert "hidden" in page.locator(".rw-admin-clips li", has_text=PROMPTS[1]).inner_text()
        gallery.wait_for_function(
            "text => ![...document.querySelectorAll('.rw-prompt')].some(p => "
            "p.textContent === text)",
            arg=PROMPTS[1],
            timeout=15_000,
        )
        assert gallery.evaluate("() => window.sameDocument === true")
        gallery.screenshot(path=str(ui.screenshot_path("gallery-moderated.png", tmp_path)))

        # the numbers follow without a reload, and an open form keeps what is typed in it
        page.evaluate("() => { window.sameDocument = true; }")
        bob = page.locator("#participant-3")
        bob.locator("summary", has_text="Manage").click()
        bob.locator("input[name=credits]").first.fill("77")
        finished = room.people["alice"]  # alice's second job finishes meanwhile
        deadline = time.monotonic() + 30
        while "2" not in page.locator("#participant-2 td").nth(5).inner_text():
            assert time.monotonic() < deadline, "the finished count never changed"
            page.wait_for_timeout(250)
        assert page.evaluate("() => window.sameDocument === true"), "the page reloaded"
        assert bob.locator("input[name=credits]").first.input_value() == "77"
        assert finished.account()["jobs_left"] == 3
        page.screenshot(path=str(ui.screenshot_path("admin-after.png", tmp_path)), full_page=True)
        assert [e for e in errors if "ERR_ABORTED" not in e] == []
    finally:
        admin.close()
        projector.close()


def test_before_the_first_clip_the_projector_shows_how_to_join(
    browser: Any, tmp_path: Path
) -> None:
    errors: list[str] = []
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.add_join_code("ROOM-42", 30, Limits(jobs=3))
        token = gateway.add_participant("projector", admin=True)
        context, page = _page(browser, f"{gateway.base_url}/gallery?token={token}", errors, 1920)
        try:
            page.wait_for_selector(".rw-status[data-state=live]")
            join = page.locator(".rw-join")
            assert join.is_visible()
            assert f"runway-widget join {gateway.participant_urls[0]} ROOM-42" in join.inner_text()
            qr = page.locator(".rw-join img.rw-qr")
            assert qr.evaluate("img => img.complete && img.naturalWidth > 100")
            page.screenshot(path=str(ui.screenshot_path("gallery-join.png", tmp_path)))
            client = participant(gateway, tmp_path, "first")
            client.wait(client.imagine(prompt="the first clip"), timeout=60, poll_interval=0.2)
            page.wait_for_selector(".rw-clips > li", timeout=30_000)
            assert not join.is_visible()  # the first clip takes the stage
            assert errors == []
        finally:
            context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_on_the_admin_page_has_4_5_to_1_contrast(
    browser: Any, room: Any, scheme: str
) -> None:
    room.roster.revoke("bob")  # a muted row too
    room.pages.feed.set_hidden(1, True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        page.goto(f"{room.base_url}/admin?token={room.admin_token}")
        page.locator("#participant-2 summary").click()
        texts = ui.contrast(page, "body")
        worst = min(texts, key=lambda text: text["ratio"])
        print(scheme, f"{len(texts)} texts, lowest {worst['ratio']:.1f}:1 ({worst['text']!r})")
        assert worst["ratio"] >= 4.5, worst
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    finally:
        context.close()
