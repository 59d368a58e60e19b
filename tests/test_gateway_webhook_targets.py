"""Participants' webhooks never reach into the gateway's own network (unless allowed)."""

from __future__ import annotations

import logging
import time

import pytest

from runway_widget._http.outbound import OutboundPolicy
from runway_widget.gateway.db.ledger import JobRow
from runway_widget.gateway.participant_webhooks import ParticipantWebhooks
from runway_widget.tracking.webhooks import WebhookReceiver
from tests.gateway_support import call, demo_gateway, participant
from tests.hostile_server import HostileServer, json_reply, send, trickle
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(120)


def _submit(gateway, token, url):
    body = {"prompt": "p", "generation_type": "text2video", "webhook_url": url}
    body["webhook_secret"] = "s"
    return call(gateway, "POST", "/runway-imagine", token, json=body)


def test_a_loopback_webhook_is_refused_at_submit_with_nothing_sent_or_reserved(tmp_path):
    with demo_gateway(tmp_path) as gateway, WebhookReceiver(secret="s") as receiver:
        token = participant(gateway, tmp_path, "rita", jobs=2).api_key
        for url in (receiver.url, "http://169.254.169.254/latest", "http://10.0.0.7/x"):
            reply = _submit(gateway, token, url)
            assert reply.status_code == 400
            [error] = reply.json()["errors"]
            assert "webhook_url must not point at a" in error["msg"]
        assert gateway.upstream.demo.stats.get("/runway-imagine", 0) == 0
        account = call(gateway, "GET", "/account", token).json()
        assert (account["jobs_left"], account["total_images"]) == (2, 0)
        assert gateway.report()[0]["jobs_used"] == 0


def test_allowed_by_the_instructor_a_loopback_webhook_is_pushed_to(tmp_path):
    pushed = []
    with (
        demo_gateway(tmp_path, allow_private_webhooks=True) as gateway,
        WebhookReceiver(secret="s") as receiver,
    ):
        receiver.subscribe(pushed.append)
        reply = _submit(gateway, participant(gateway, tmp_path).api_key, receiver.url)
        assert reply.status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(t.is_finished for t in pushed):
            time.sleep(0.1)
    assert any(t.is_finished for t in pushed)


def _failed(task_id: str) -> JobRow:
    return JobRow(1, task_id, "failed", "failed", None, "moderated", None, None, None)


def test_each_send_is_checked_again_so_a_name_resolving_inward_later_gets_nothing(caplog):
    caplog.set_level(logging.INFO)
    with WebhookReceiver(secret="s") as receiver:
        hooks = ParticipantWebhooks(lambda: "http://gateway", OutboundPolicy())
        hooks.register("t-rebound", receiver.url, "s")  # as if it had looked public at submit
        hooks.deliver(_failed("t-rebound"))
        wait_for(lambda: "t-rebound not sent" in caplog.text, "the log line")
        hooks.close()
        stats = receiver.stats
        assert stats["accepted"] + stats["duplicates"] + stats["rejected"] == 0
    assert "not sent: webhook_url must not point at a loopback address" in caplog.text


def test_a_send_follows_no_redirect_and_is_bounded(caplog):
    caplog.set_level(logging.INFO)
    with HostileServer() as bad:
        bad.route("/hook", send(json_reply({}, 307, Location=f"{bad.base_url}/elsewhere")))
        bad.route("/slow", trickle(json_reply({"ok": True}), every=0.2, forever=True))
        hooks = ParticipantWebhooks(
            lambda: "http://gateway", OutboundPolicy(allow_private=True), deadline=1.0
        )
        hooks.register("t-redirect", f"{bad.base_url}/hook", None)
        hooks.register("t-slow", f"{bad.base_url}/slow", None)
        started = time.monotonic()
        hooks.deliver(_failed("t-redirect"))
        hooks.deliver(_failed("t-slow"))
        wait_for(lambda: "t-slow failed" in caplog.text, "the log line")
        hooks.close()
        assert time.monotonic() - started < 10  # the 1 s deadline cut the trickle
        assert bad.count("/hook") == 1 and bad.count("/elsewhere") == 0
    assert "participant webhook for task t-slow failed: DeadlinePassed" in caplog.text
