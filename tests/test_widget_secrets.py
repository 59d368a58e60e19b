"""No API key and no webhook secret in the panel's serialised widget state, repr or logs."""

from __future__ import annotations

import json
import logging

import pytest
from fake_api import Reply
from ipywidgets.embed import embed_data
from waiting import wait_for
from widget_helpers import is_mp4

from runway_widget.tracking.tracker import TaskTracker
from runway_widget.tracking.webhooks import WebhookReceiver
from runway_widget.widget import RunwayPanel

WEBHOOK_SECRET = "whsec-Distinctive-Q7x9Z2k"


def saved_state(panel: RunwayPanel) -> str:
    """What a notebook save would keep of the widgets."""
    return json.dumps(embed_data(views=[panel]), default=str)


@pytest.fixture
def key_client(panel_client):
    """A client whose API key is the secret to look for (the fake service's)."""
    return panel_client


@pytest.fixture
def make_panel(key_client, clock, tmp_path):
    """Panels following their jobs on the fake clock."""
    made = []

    def make(**options) -> RunwayPanel:
        options.setdefault("tracker", TaskTracker(key_client, clock=clock, wait=clock.wait))
        panel = RunwayPanel(client=key_client, download_dir=tmp_path / "videos", **options)
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.close()
        panel.tracker.stop()


def test_typed_webhook_secret_and_key_stay_out_of_the_state(key_client, make_panel, demo_like,
                                                            clock, caplog):
    caplog.set_level(logging.DEBUG, logger="runway_widget")
    key = key_client.api_key
    with WebhookReceiver(secret=WEBHOOK_SECRET) as receiver:
        panel = make_panel()
        try:
            form = panel.form
            form.prompt.value = "a secret garden"
            form.webhook_url.value = receiver.url
            form.webhook_secret.value = WEBHOOK_SECRET
            assert WEBHOOK_SECRET not in saved_state(panel)
            job = panel.submit()
            assert job is not None
            view = panel.view(job)
            view.act("code")
            assert demo_like.push(job.task_id) == 200  # the service pushes with the secret
            clock.run_until(lambda: job.state == "finished")
            wait_for(lambda: is_mp4(view.video), "the video")
            assert receiver.stats["accepted"] > 0
            assert receiver.stats["rejected"] == 0
            state = saved_state(panel)
            texts = [state, repr(panel), repr(job), view.code, caplog.text,
                     key_client.store.path.read_text()]
            for text in texts:
                assert key not in text
                assert WEBHOOK_SECRET not in text
            assert 'os.environ["APIFRAME_WEBHOOK_SECRET"]' in view.code
        finally:
            panel.close()


def test_a_failed_submit_leaves_no_part_of_the_secret_in_the_state(make_panel, demo_like):
    panel = make_panel()
    try:
        form = panel.form
        form.prompt.value = "a secret that never leaves"
        form.webhook_url.value = "https://hooks.example.com/in"
        form.webhook_secret.value = WEBHOOK_SECRET
        demo_like.script("/runway-imagine", Reply(drop=True))
        assert panel.submit() is None  # sent, no answer: the banner says so
        assert "no answer came back" in panel.banner
        state = saved_state(panel)
        for tail in (WEBHOOK_SECRET[-4:], WEBHOOK_SECRET[-3:], WEBHOOK_SECRET[:5]):
            assert tail not in state, tail
        assert "secret is set" in form._secret_note.value
    finally:
        panel.close()


def test_receive_updates_here_uses_the_receiver_secret_without_a_trait(key_client, make_panel,
                                                                         demo_like, clock):
    with WebhookReceiver() as receiver:
        panel = make_panel(webhooks=receiver)
        try:
            form = panel.form
            assert form._receive_here.layout.display != "none"
            form._receive_here.click()
            assert form.webhook_url.value == receiver.url
            form.prompt.value = "updates pushed to this kernel"
            card = panel.submit()
            assert demo_like.push(card.task_id) == 200  # with the receiver's own secret
            assert receiver.stats["accepted"] > 0
            clock.run_until(lambda: card.state == "finished")
            assert receiver.stats["rejected"] == 0
            state = saved_state(panel)
            assert receiver.secret not in state
            assert key_client.api_key not in state
        finally:
            panel.close()

