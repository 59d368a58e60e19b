"""The chart's own hub code reads docs/z2jh: a real JupyterHub, both service forms.

Each hub starts from the Zero to JupyterHub chart's ``jupyterhub_config.py`` (tests/z2jh/,
unchanged) reading the chart's defaults with ``docs/z2jh/values.yaml`` merged over them, as
Helm merges them; `z2jh_support` says what stands in for the cluster. Checked: the hub
registers the service and routes ``/services/runway-gateway/`` to it, a kernel's own hub
token is let in (the scopes the values grant), kernels get ``RUNWAY_GATEWAY_URL`` and never
the upstream key, the room's settings reach the gateway, and (externally managed) the
gateway's Deployment states all the hub's OAuth needs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import hub_harness
import pytest
import requests
import z2jh_support as z2jh

pytestmark = [pytest.mark.hub, pytest.mark.timeout(300)]

UPSTREAM_KEY = "sk-z2jh-test-key-never-in-a-kernel"
USER = "alice"
ROOM_JOBS = 5  # [defaults] jobs in both docs/z2jh room files

KERNEL_ENV = f"""
import json, os
print(json.dumps({{
    "gateway_url": os.environ.get("RUNWAY_GATEWAY_URL"),
    "token": os.environ.get("JUPYTERHUB_API_TOKEN"),
    "upstream_key": [k for k, v in os.environ.items()
                     if v == {UPSTREAM_KEY!r} or k == "APIFRAME_API_KEY"],
}}))
"""


def _hub(tmp_path_factory: pytest.TempPathFactory, form: str, **kwargs: Any
         ) -> Iterator[z2jh.ChartHub]:
    missing = hub_harness.missing_requirements()
    if missing:
        pytest.skip("a real JupyterHub needs " + "; ".join(missing))
    values = [z2jh.load_yaml(z2jh.DOCS / "values.yaml")]
    if form == "managed":
        values.append(z2jh.load_yaml(z2jh.DOCS / "values-hub-managed.yaml"))
    hub = z2jh.ChartHub(tmp_path_factory.mktemp(f"z2jh-{form}"), values,
                        upstream_key=UPSTREAM_KEY, **kwargs)
    started = time.monotonic()
    hub.start()
    try:
        hub.start_servers([USER])
        print(f"{form}: chart hub, gateway and one server ready in "
              f"{time.monotonic() - started:.1f} s")
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[z2jh.ChartHub]:
    yield from _hub(tmp_path_factory, "external",
                    manifest=z2jh.load_documents(z2jh.DOCS / "gateway.yaml"))


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[z2jh.ChartHub]:
    yield from _hub(tmp_path_factory, "managed")


def _through_proxy_public(hub: z2jh.ChartHub, url: str) -> str:
    """The in-cluster proxy Service's URL, as this machine reaches the proxy."""
    assert url.startswith("http://proxy-public/"), url
    return hub.public_url + url[len("http://proxy-public"):]


def _check_the_service_and_a_kernel(hub: z2jh.ChartHub, url: str) -> None:
    services = hub.api("GET", "/services")
    assert services[z2jh.SERVICE]["prefix"] == f"/services/{z2jh.SERVICE}/"
    assert services[z2jh.SERVICE]["url"] == url

    result = hub.execute(USER, hub.start_kernel(USER), KERNEL_ENV)
    assert result.error is None, (result.error, result.traceback)
    seen = result.last_json()
    assert seen["gateway_url"] == "http://proxy-public/services/runway-gateway/"
    assert seen["upstream_key"] == []

    gateway = _through_proxy_public(hub, seen["gateway_url"])
    status, account = hub.request("GET", gateway + "account", token=seen["token"])
    assert status == 200, (status, account, hub.log_tail())
    assert account["email"] == USER and account["jobs_left"] == ROOM_JOBS

    narrow = hub.user_token(USER, scopes=[f"read:users:name!user={USER}"])
    status, body = hub.request("GET", gateway + "account", token=narrow)
    assert status == 401, (status, body)


def test_externally_managed_the_hub_routes_to_the_deployment_and_kernels_get_in(
    external: z2jh.ChartHub,
) -> None:
    _check_the_service_and_a_kernel(external, f"http://127.0.0.1:{external.gateway_port}")


def test_hub_managed_the_hub_starts_the_gateway_with_the_key_and_kernels_get_in(
    managed: z2jh.ChartHub,
) -> None:
    command = managed.api("GET", "/services")[z2jh.SERVICE]["command"]
    assert command[1:4] == ["gateway", "serve", "--jupyterhub"], command
    # it runs only with the key: the hub passed it on (hub.extraEnv + hub.extraConfig)
    assert (managed.state_dir / "gateway-home").is_dir()
    _check_the_service_and_a_kernel(managed, f"http://127.0.0.1:{managed.gateway_port}")


def test_externally_managed_a_browser_signs_in_through_the_hubs_oauth(
    external: z2jh.ChartHub,
) -> None:
    """The hub's login, then the gallery: authorize, the callback, the code exchanged on the
    hub's internal API URL (the Deployment's JUPYTERHUB_* variables)."""
    browser = requests.Session()
    login = browser.get(f"{external.public_url}/hub/login", timeout=10)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.text)
    assert xsrf, login.text[:500]
    signed_in = browser.post(
        f"{external.public_url}/hub/login",
        data={"username": USER, "password": "any", "_xsrf": xsrf[1]},
        timeout=10,
    )
    assert signed_in.ok, signed_in.status_code
    gallery = browser.get(external.gateway_url + "gallery", timeout=20)
    hops = [reply.url.split("?")[0] for reply in gallery.history]
    assert gallery.status_code == 200, (hops, gallery.status_code, external.log_tail())
    assert f"/services/{z2jh.SERVICE}/oauth_callback" in hops[-1], hops
    assert gallery.url == external.gateway_url + "gallery"
