"""``gateway serve --jupyterhub`` listens where the hub says, unless a flag says otherwise.

The hub gives a managed service ``JUPYTERHUB_SERVICE_URL`` (where to listen) and
``JUPYTERHUB_SERVICE_PREFIX`` (the path the proxy keeps); an external one is given the same
variables by its Deployment. ``--host``, ``--port`` and ``--prefix`` override them (a pod
listens on 0.0.0.0 while its URL names a Kubernetes Service).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from gateway_support import free_port, stop_process

pytest.importorskip("jupyterhub")

HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "service-token-unused-here",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
    "JUPYTERHUB_SERVICE_NAME": "runway-gateway",
    "JUPYTERHUB_CLIENT_ID": "service-runway-gateway",
}


@contextmanager
def serving(health_url: str, *flags: str, env: dict[str, str]) -> Iterator[None]:
    """``gateway serve --jupyterhub FLAGS`` with `env`, once `health_url` answers."""
    command = [sys.executable, "-m", "runway_widget.cli.commands", "gateway", "serve",
               "--jupyterhub", "--upstream", "demo", *flags]
    process = subprocess.Popen(command, env={**os.environ, **HUB_ENV, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not _answers(health_url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no answer at {health_url}: {process.stderr.read().decode()[-800:]}"
                            if process.poll() is not None else f"no answer at {health_url}")
            time.sleep(0.1)
        yield
    finally:
        stop_process(process)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_it_listens_at_the_service_url_under_the_service_prefix(tmp_path) -> None:
    port = free_port()
    env = {"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
           "JUPYTERHUB_SERVICE_PREFIX": "/services/runway-gateway/",
           "RUNWAY_WIDGET_HOME": str(tmp_path)}
    with serving(f"http://127.0.0.1:{port}/services/runway-gateway/health", env=env):
        assert not _answers(f"http://127.0.0.1:{port}/health")


def test_flags_override_the_service_url_and_prefix(tmp_path) -> None:
    assigned, port = free_port(), free_port()
    env = {"JUPYTERHUB_SERVICE_URL": f"http://hub:{assigned}",  # a Service name: not local
           "JUPYTERHUB_SERVICE_PREFIX": "/services/runway-gateway/",
           "RUNWAY_WIDGET_HOME": str(tmp_path)}
    flags = ("--host", "127.0.0.1", "--port", str(port), "--prefix", "/workshop/")
    with serving(f"http://127.0.0.1:{port}/workshop/health", *flags, env=env):
        assert not _answers(f"http://127.0.0.1:{assigned}/workshop/health")


def test_a_service_url_without_a_port_means_the_schemes(monkeypatch) -> None:
    from runway_widget.gateway.hub_auth import hub_service_address

    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://hub")
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert hub_service_address() == ("hub", 80, None)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "https://0.0.0.0")
    assert hub_service_address() == ("0.0.0.0", 443, None)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_URL")
    assert hub_service_address() == (None, None, None)
