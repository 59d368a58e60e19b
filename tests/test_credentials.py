"""Where the client's key and base URL come from when none is given."""

from __future__ import annotations

import json
import os
import stat

import pytest

from runway_widget.client.apiframe import DEFAULT_BASE_URL, ApiframeClient
from runway_widget.client.credentials import _write_private, config_path, load_joined, resolve

GATEWAY = "http://127.0.0.1:8765"


@pytest.fixture
def joined(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "config"))
    _write_private(config_path(), json.dumps({"url": GATEWAY + "/", "token": "rwg_joined"}))
    return config_path()


def test_order_arguments_environment_hub_joined_none(monkeypatch, joined):
    assert resolve().source == "join" and resolve().api_key == "rwg_joined"
    assert resolve().base_url == GATEWAY
    monkeypatch.setenv("RUNWAY_GATEWAY_URL", "http://hub/services/runway-gateway/")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    hub = resolve()
    assert (hub.source, hub.api_key, hub.base_url) == (
        "jupyterhub",
        "hub-token",
        "http://hub/services/runway-gateway",
    )
    monkeypatch.setenv("APIFRAME_API_KEY", "env-key")
    assert (resolve().source, resolve().base_url) == ("environment", None)
    assert resolve("arg-key", "http://x").api_key == "arg-key"
    assert "env-key" not in repr(resolve()) and "hub-token" not in repr(hub)


def test_a_stored_token_is_not_sent_to_another_backend(joined):
    other = resolve(base_url="https://api.apiframe.pro")
    assert (other.source, other.api_key) == ("none", None)
    assert ApiframeClient().base_url == GATEWAY
    assert ApiframeClient(base_url=GATEWAY).api_key == "rwg_joined"


def test_nothing_configured_means_no_key(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "empty"))
    assert resolve().source == "none"
    client = ApiframeClient()
    assert client.api_key is None and client.base_url == DEFAULT_BASE_URL


def test_the_token_file_is_private_and_a_broken_one_is_ignored(joined):
    assert stat.S_IMODE(os.stat(joined).st_mode) == 0o600
    joined.write_text("{not json")
    assert load_joined() is None and resolve().source == "none"
    joined.write_text(json.dumps({"url": GATEWAY}))
    assert load_joined() is None
