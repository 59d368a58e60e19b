"""Shared fixtures: an isolated history folder, no real credentials, and a demo backend."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test touches the user's history or a real account."""
    names = (
        "RUNWAY_WIDGET_HOME",
        "RUNWAY_WIDGET_CONFIG_DIR",
        "APIFRAME_API_KEY",
        "APIFRAME_BASE_URL",
        "RUNWAY_GATEWAY_URL",
        "JUPYTERHUB_API_TOKEN",
    )
    saved = {name: os.environ.get(name) for name in names}
    os.environ["RUNWAY_WIDGET_HOME"] = str(tmp_path_factory.mktemp("runway_widget_home"))
    os.environ["RUNWAY_WIDGET_CONFIG_DIR"] = str(tmp_path_factory.mktemp("runway_widget_config"))
    for name in names[2:]:
        os.environ.pop(name, None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def demo_server():
    from runway_widget.demo import DemoServer

    with DemoServer(job_seconds=1.5) as server:
        yield server


@pytest.fixture
def demo_client(demo_server, tmp_path):
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.store import JobStore

    client = ApiframeClient(
        api_key=demo_server.api_key,
        base_url=demo_server.base_url,
        store=JobStore(tmp_path / "jobs.jsonl"),
        requests_per_second=50,
        demo=True,
    )
    yield client
    client.close()
