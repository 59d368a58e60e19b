"""Shared fixtures: an isolated history folder, no real credentials, a demo backend, and the
fake service on a fake clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import browser_support
import pytest
from api_server import ApiServer
from fake_api import TEST_API_KEY, FakeApi
from fake_clock import FakeClock
from fresh_install import FreshInstall, install_fresh_clone

SLOW_FIRST = ("browser", "hub", "kernel", "slow")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than there are cores. The long tests mostly wait on a
    JupyterLab, a hub or a kernel in a process of its own, so a third worker on two cores
    finishes the suite sooner rather than crowding it."""
    return (os.cpu_count() or 1) + 1


@pytest.hookimpl(tryfirst=True)  # --failed-first and --new-first reorder after this
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that drive a browser, start a hub or a kernel first, in that order, then the
    other long ones (``slow``): under pytest-xdist (``--dist loadfile``, see pyproject.toml)
    the long ones start at once and the quick ones fill the gaps, rather than one browser
    file running alone at the end."""
    rank: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::")[0]
        marks = {mark.name for mark in item.iter_markers()}
        here = min((SLOW_FIRST.index(m) for m in marks & set(SLOW_FIRST)), default=len(SLOW_FIRST))
        rank[path] = min(rank.get(path, here), here)
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])


@pytest.fixture(autouse=True)
def _fresh_account_lanes() -> Iterator[None]:
    """Each test's panels get account lanes of their own: the in-memory API has one address
    for every test, and a call a test left held must not sit ahead of the next test's."""
    yield
    from runway_widget.widget import background

    with background._account_lock:
        lanes = list(background._account_lanes.values())
        background._account_lanes.clear()
    for lane in lanes:
        lane.shutdown()


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


@pytest.fixture(scope="session")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> FreshInstall:
    """This checkout cloned and installed in a venv of its own, with no network (fresh_install)."""
    return install_fresh_clone(tmp_path_factory.mktemp("fresh_install"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's tests, each in contexts of its own (no cookies,
    storage or pages shared); skipped when Chromium is missing. Closed with the module: while
    Playwright's sync API is open its event loop runs in this thread, and any later test's
    ``asyncio.run()`` would fail."""
    with browser_support.chromium() as launched:
        yield launched


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


# -- the fake service, the fake clock ------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    """Time that moves only when the test moves it (see fake_clock)."""
    return FakeClock()


@pytest.fixture
def api(clock: FakeClock) -> FakeApi:
    """The fake service in memory, on the fake clock."""
    return FakeApi(clock=clock)


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    """The same fake service on a loopback port, for what needs a real socket."""
    with ApiServer() as server:
        yield server


@pytest.fixture
def client_for(tmp_path, clock: FakeClock):
    """Build clients of a test service, closed after the test: in memory on the fake clock
    (for a `FakeApi`), over HTTP on the real one (for a server on a socket: an `ApiServer`,
    a `HostileServer`)."""
    from runway_widget.client.apiframe import ApiframeClient
    from runway_widget.store import JobStore

    made: list[ApiframeClient] = []

    def make(service: Any, **options: Any) -> ApiframeClient:
        options.setdefault("api_key", TEST_API_KEY)
        options.setdefault("base_url", service.base_url)
        options.setdefault("store", JobStore(tmp_path / "jobs.jsonl"))
        if isinstance(service, FakeApi) and not isinstance(service, ApiServer):
            options.setdefault("transport", service.transport())
            options.setdefault("clock", clock)
            options.setdefault("sleep", clock.sleep)
        client = ApiframeClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real, playable MP4 (rendered once), for fakes that serve a finished job's video."""
    from runway_widget.demo.renderer import RenderSpec, render

    spec = RenderSpec.from_payload({"prompt": "a test clip", "generation_type": "text2video"})
    return render(spec, tmp_path_factory.mktemp("clip") / "clip.mp4", None).read_bytes()


@pytest.fixture
def demo_like(api: FakeApi, clip: bytes) -> FakeApi:
    """The fake service running every submission as a 20 s job (on the fake clock) that
    ends with a real clip, as the demo backend does."""
    api.run_jobs(20.0, clip)
    return api


@pytest.fixture
def panel_client(client_for, demo_like: FakeApi):
    """A demo client of the demo-like fake, in memory on the fake clock."""
    return client_for(demo_like, requests_per_second=50, demo=True)
