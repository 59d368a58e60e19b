"""Gateways for tests: real HTTP on 127.0.0.1, on the demo backend or the scriptable ApiServer."""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from runway_widget._http.outbound import OutboundPolicy
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.gateway.app import GatewayServer
from runway_widget.gateway.upstream import Upstream, demo_inputs_fetch
from runway_widget.store import JobStore
from tests.fake_clock import FakeClock

_names = itertools.count(1)


def upstream_client(base_url: str, api_key: str, folder: Path, **options: Any) -> ApiframeClient:
    options = {
        "requests_per_second": 50,
        "timeout": 5.0,
        "max_retries": 2,
        "backoff_factor": 0.05,
        **options,
    }
    return ApiframeClient(api_key, base_url, store=JobStore(folder / "upstream.jsonl"), **options)


@contextlib.contextmanager
def demo_gateway(folder: Path, job_seconds: float = 1.0, **kwargs: Any) -> Iterator[GatewayServer]:
    """A gateway whose upstream is a demo backend of its own (``gateway.upstream.demo``),
    fetching participants' inputs under the gateway's rule, as ``--upstream demo`` does."""
    from runway_widget.demo import DemoServer

    policy = OutboundPolicy(allow_private=kwargs.get("allow_private_webhooks", False))
    demo = DemoServer(job_seconds=job_seconds, fetch=demo_inputs_fetch(policy)).start()
    client = upstream_client(demo.base_url, demo.api_key, folder)
    with gateway_on(Upstream(client, demo=demo), folder, **kwargs) as gateway:
        yield gateway


@contextlib.contextmanager
def gateway_on(upstream: Upstream, folder: Path, **kwargs: Any) -> Iterator[GatewayServer]:
    options = {
        "db": f"sqlite:///{folder / 'gateway.sqlite3'}",
        "home": folder,
        "poll_interval": (0.05, 0.5),  # the gateway notices changes upstream soon
        **kwargs,
    }
    with GatewayServer(upstream=upstream, **options) as gateway:
        yield gateway


def participant(
    gateway: GatewayServer,
    folder: Path,
    name: str | None = None,
    *,
    clock: FakeClock | None = None,
    **limits: Any,
) -> ApiframeClient:
    """A new participant's client (their own token, their own job history); with ``clock``,
    its waits between retries pass on that fake clock (its requests stay real HTTP)."""
    name = name or f"participant-{next(_names)}"
    token = gateway.add_participant(name, **limits)
    timing: dict[str, Any] = {} if clock is None else {"clock": clock, "sleep": clock.sleep}
    return ApiframeClient(
        token,
        gateway.base_url,
        store=JobStore(folder / f"{name}.jsonl"),
        requests_per_second=100,
        timeout=10.0,
        **timing,
    )


def upstream_id(gateway: GatewayServer | str, task_id: str, timeout: float = 20.0) -> str:
    """The upstream's id for the participant's task ``task_id``, once the queue sent it
    (``gateway``: one in this process, or the database URL of one in another)."""
    from runway_widget.gateway.db.database import open_engine
    from runway_widget.gateway.db.ledger import Ledger

    ledger = gateway.ledger if isinstance(gateway, GatewayServer) else Ledger(open_engine(gateway))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            row = ledger.job(task_id)
            if row is not None and row.upstream_task_id:
                return row.upstream_task_id
            time.sleep(0.02)
    finally:
        if not isinstance(gateway, GatewayServer):
            ledger.engine.dispose()
    raise AssertionError(f"task {task_id} was not sent upstream within {timeout:g}s")


def ended(gateway: GatewayServer, task_id: str, timeout: float = 20.0) -> Any:
    """The ledger's row for ``task_id`` once the job is no longer queued or being sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = gateway.ledger.job(task_id)
        if row is not None and row.state not in ("queued", "sending"):
            return row
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} was still waiting after {timeout:g}s")


def call(
    gateway: GatewayServer, method: str, path: str, token: str | None = None, **kwargs: Any
) -> requests.Response:
    """One raw HTTP request to the gateway (no client retries, no local validation)."""
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = token
    return requests.request(method, gateway.base_url + path, headers=headers, timeout=10, **kwargs)


def post_join(base_url: str, code: str, name: str, source: str = "127.0.0.5") -> requests.Response:
    """POST /join from ``source`` (a loopback address of its own: one client)."""
    session = requests.Session()
    session.get_adapter("http://").init_poolmanager(1, 1, source_address=(source, 0))
    with session:
        return session.post(base_url + "/join", json={"code": code, "name": name}, timeout=10)


class AllRecords(logging.Handler):
    """Every record the process logs (but the test's own HTTP client's), as written out."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.errors: list[str] = []  # errors and tracebacks

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("urllib3"):
            return
        line = self.format(record)
        self.lines.append(line)
        if record.levelno >= logging.ERROR or "Traceback" in line:
            self.errors.append(line)


@contextlib.contextmanager
def all_log_records() -> Iterator[AllRecords]:
    """Capture every logger's records at DEBUG while the block runs."""
    handler, root = AllRecords(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# -- separate processes ----------------------------------------------------------------------

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_process(
    port: int, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``runway-widget gateway serve --port PORT ARGS…`` in its own process, once it answers."""
    return answering(spawn_process(port, *args, env=env, log=log), port)


def serve_processes(
    ports: list[int], *args: str, env: dict[str, str] | None = None, logs: list[Path] | None = None
) -> list[subprocess.Popen[bytes]]:
    """`serve_process` on each of ``ports`` (logging to ``logs``, one each), the processes
    starting in parallel."""
    spawned = []
    try:
        for i, port in enumerate(ports):
            spawned.append(spawn_process(port, *args, env=env, log=logs[i] if logs else None))
        return [answering(process, port) for process, port in zip(spawned, ports, strict=True)]
    except BaseException:
        for process in spawned:
            stop_process(process)
        raise


def spawn_process(
    port: int, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``runway-widget gateway serve --port PORT ARGS…`` started, not waited for: processes
    spawned together start (and compile the package) in parallel; then `answering`."""
    command = [
        sys.executable,
        "-m",
        "runway_widget.cli.commands",
        "gateway",
        "serve",
        "--port",
        str(port),
        *args,
    ]
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=out)


def answering(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    """``process`` once the gateway it runs answers on ``port`` (killed if it never does)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the gateway did not start within 30 s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def postgres_binaries() -> Path | None:
    found = sorted(glob.glob(PG_BIN_GLOB + "/initdb"))
    return Path(found[-1]).parent if found else None


needs_postgres = pytest.mark.skipif(
    postgres_binaries() is None,
    reason="PostgreSQL binaries not found in /usr/lib/postgresql/*/bin "
    "(install the Debian 'postgresql' package; .ci/run does)",
)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL in a temporary data directory, run as ``postgres`` when root."""
    binaries = postgres_binaries()
    assert binaries is not None
    data = Path(tempfile.mkdtemp(prefix="runway-widget-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    try:
        run(
            str(binaries / "initdb"),
            "-D",
            str(data / "db"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        run(
            str(binaries / "pg_ctl"),
            "-D",
            str(data / "db"),
            "-l",
            str(data / "log"),
            "-w",
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            run(str(binaries / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)
