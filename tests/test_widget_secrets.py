"""No API key and no webhook secret in the panel's serialised widget state, repr or logs."""

from __future__ import annotations

import json
import logging

import pytest
from ipywidgets.embed import embed_data
from widget_helpers import is_mp4, wait_for

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.store import JobStore
from runway_widget.tracking.webhooks import WebhookReceiver
from runway_widget.widget import RunwayPanel

WEBHOOK_SECRET = "whsec-Distinctive-Q7x9Z2k"


def saved_state(panel: RunwayPanel) -> str:
    """What a notebook save would keep of the widgets."""
    return json.dumps(embed_data(views=[panel]), default=str)


@pytest.fixture
def key_client(demo_server, tmp_path):
    """A real client whose API key (the demo's) is the secret to look for."""
    from runway_widget.demo import DEMO_API_KEY

    client = ApiframeClient(api_key=DEMO_API_KEY, base_url=demo_server.base_url,
                            store=JobStore(tmp_path / "jobs.jsonl"), requests_per_second=50)
    yield client
    client.close()


def test_typed_webhook_secret_and_key_stay_out_of_the_state(key_client, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="runway_widget")
    key = key_client.api_key
    with WebhookReceiver(secret=WEBHOOK_SECRET) as receiver:
        panel = RunwayPanel(client=key_client, download_dir=tmp_path / "videos")
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
            wait_for(lambda: job.state == "finished", "the job to finish")
            wait_for(lambda: is_mp4(view.video), "the video")
            wait_for(lambda: receiver.stats["accepted"] > 0, "a webhook with the typed secret")
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


def test_a_failed_submit_leaves_no_part_of_the_secret_in_the_state(key_client, demo_server,
                                                                   tmp_path):
    panel = RunwayPanel(client=key_client, download_dir=tmp_path / "videos")
    try:
        form = panel.form
        form.prompt.value = "a secret that never leaves"
        form.webhook_url.value = "https://hooks.example.com/in"
        form.webhook_secret.value = WEBHOOK_SECRET
        demo_server.faults.drop_rate = 1.0
        try:
            assert panel.submit() is None  # sent, no answer: the banner says so
        finally:
            demo_server.faults.drop_rate = 0.0
        assert "no answer came back" in panel.banner
        state = saved_state(panel)
        for tail in (WEBHOOK_SECRET[-4:], WEBHOOK_SECRET[-3:], WEBHOOK_SECRET[:5]):
            assert tail not in state, tail
        assert "secret is set" in form._secret_note.value
    finally:
        panel.close()


def test_receive_updates_here_uses_the_receiver_secret_without_a_trait(key_client, tmp_path):
    with WebhookReceiver() as receiver:
        panel = RunwayPanel(client=key_client, download_dir=tmp_path / "videos",
                            webhooks=receiver)
        try:
            form = panel.form
            assert form._receive_here.layout.display != "none"
            form._receive_here.click()
            assert form.webhook_url.value == receiver.url
            form.prompt.value = "updates pushed to this kernel"
            card = panel.submit()
            wait_for(lambda: receiver.stats["accepted"] > 0, "a webhook with the receiver secret")
            wait_for(lambda: card.state == "finished", "the job to finish")
            assert receiver.stats["rejected"] == 0
            state = saved_state(panel)
            assert receiver.secret not in state
            assert key_client.api_key not in state
        finally:
            panel.close()

