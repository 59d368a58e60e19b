"""Through a workshop gateway the panel's header says whose quota it uses and what is left."""

from __future__ import annotations

import pytest

from runway_widget.client.apiframe import ApiframeClient
from runway_widget.widget.header import account_text
from tests.gateway_support import demo_gateway

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("info", "text"),
    [
        ({"email": "me@example.org", "credits": 1200, "plan": "pro"}, "1,200 credits"),
        ({"email": "eve", "credits": 20, "jobs_left": 2, "plan": "workshop"},
         "eve's quota: 2 jobs · 20 credits left"),
        ({"email": "eve", "credits": 5, "jobs_left": 1}, "eve's quota: 1 job · 5 credits left"),
        ({"email": "eve", "credits": None, "jobs_left": None},
         "eve's quota: unlimited jobs · unlimited credits left"),
        ({"credits": 0, "jobs_left": 0}, "your quota: 0 jobs · 0 credits left"),
    ],
)
def test_account_text(info, text):
    assert account_text(info) == text


def test_the_header_names_the_participant_and_their_quota_left(tmp_path):
    from runway_widget.widget import RunwayPanel

    with demo_gateway(tmp_path) as gateway:
        token = gateway.add_participant("<b>eve</b>", jobs=2, credits=20)
        panel = RunwayPanel(client=ApiframeClient(token, gateway.base_url))
        try:
            panel.header.refresh_credits(wait=True)
            shown = panel.header.credits.value
            assert "&lt;b&gt;eve&lt;/b&gt;&#x27;s quota: 2 jobs · 20 credits left" in shown
            panel.form.prompt.value = "a paper boat on a river"
            assert panel.submit() is not None
            panel.header.refresh_credits(wait=True)
            assert "quota: 1 job · 15 credits left" in panel.header.credits.value
            assert token not in panel.header.credits.value
        finally:
            panel.close()
