"""The acceptance suite's gateway: a running ``runway-widget gateway serve``, from the outside.

Every test of the suite talks to a gateway in a process of its own, over HTTP from loopback
addresses (different clients are different 127.x addresses) and through the ``runway-widget
gateway`` commands on its database, the way a room and its instructor do. Its upstream is the
demo backend (inside the gateway, or in the test process when a fault hook is needed) or a
hostile local server. Nothing inside the gateway is looked into: only its answers, its log
and what its commands print.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.gateway_support import free_port, serve_process, stop_process

T2V = {"prompt": "a lighthouse in a storm", "generation_type": "text2video"}


ACCEPTANCE = [pytest.mark.acceptance, pytest.mark.timeout(120)]  # each module's pytestmark


@dataclass
class RunningGateway:
    """A gateway process, its database and its log; `call` and `cli` reach it from outside."""

    port: int
    db: str
    home: Path
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        source: str = "127.0.0.1",
        **kwargs: Any,
    ) -> requests.Response:
        """One request from the loopback address ``source`` (no retries, no redirects)."""
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = token
        with requests.Session() as session:
            session.mount("http://", _SourceAdapter(source))
            return session.request(
                method, self.base_url + path, headers=headers, timeout=15, **kwargs
            )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``runway-widget gateway ARGS… --db DB``, as the instructor types it."""
        command = [sys.executable, "-m", "runway_widget.cli.commands", "gateway", *args]
        return subprocess.run(
            [*command, "--db", self.db],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def token(self, name: str, *options: str) -> str:
        """A personal token from ``gateway token add NAME OPTIONS…``."""
        done = self.cli("token", "add", name, *options)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def submit(self, token: str, source: str = "127.0.0.1", **fields: Any) -> str:
        reply = self.call("POST", "/runway-imagine", token, source=source, json={**T2V, **fields})
        assert reply.status_code == 200, reply.text
        return str(reply.json()["task_id"])

    def fetch_until(
        self, token: str, task_id: str, done: Callable[[dict], bool], seconds: float = 60.0
    ) -> dict:
        """Poll ``/fetch`` until ``done(task)``; the last task seen if it never is."""
        deadline = time.monotonic() + seconds
        while True:
            task = self.call("POST", "/fetch", token, json={"task_id": task_id}).json()
            if done(task) or time.monotonic() > deadline:
                return task
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def ended(task: dict) -> bool:
    """Finished with its clip in place (or failed): nothing about it changes any more."""
    return task.get("status") == "failed" or (
        task.get("status") == "finished" and task.get("percentage") == 100
    )


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Connections from one loopback address: another client, as the gateway sees it."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


@contextlib.contextmanager
def running_gateway(
    folder: Path,
    *serve_args: str,
    env: dict[str, str] | None = None,
    public: bool = False,
) -> Iterator[RunningGateway]:
    """``runway-widget gateway serve --db … SERVE_ARGS…`` in its own process, then stopped.

    ``public``: with ``--public-url`` (its own address), as a gateway on the internet runs.
    """
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'gateway.sqlite3'}"
    env = {"RUNWAY_WIDGET_HOME": str(folder), **(env or {})}
    port, log = free_port(), folder / "gateway.log"
    if public:
        serve_args = (*serve_args, "--public-url", f"http://127.0.0.1:{port}")
    process = serve_process(port, "--db", db, *serve_args, env=env, log=log)
    try:
        yield RunningGateway(port, db, folder, log, env, process)
    finally:
        stop_process(process)
