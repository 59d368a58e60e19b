"""A real JupyterHub on loopback, with the workshop gateway as its managed service.

The hub loads the instructor's snippet (`docs/jupyterhub_config.py`) unchanged, on top of
test settings: `DummyAuthenticator`, `SimpleLocalProcessSpawner`, configurable-http-proxy
and random ports. An `e2e-admin` service token drives the hub's REST API; code runs in a
user's kernel through the user's own server (`/user/NAME/api/kernels` + websocket), as a
participant's notebook would. Timings and pitfalls follow the measured facts for JupyterHub 6.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from browser_support import free_port

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTOR_CONFIG = ROOT / "docs" / "jupyterhub_config.py"
SERVICE = "runway-gateway"
ADMIN_SERVICE = "e2e-admin"

HUB_CONFIG = """\
import sys
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/cookie_secret"
c.JupyterHub.pid_file = "{state}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {admins!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{state}/home/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {spawner_args!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.load_groups = {groups!r}
c.JupyterHub.services = [{{"name": "{admin_service}", "api_token": "{admin_token}"}}]
c.JupyterHub.load_roles = [{{
    "name": "e2e-admin-role",
    "services": ["{admin_service}"],
    "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "admin:groups",
               "list:services", "read:services", "read:roles"],
}}]
load_subconfig({instructor!r})
"""


def missing_requirements() -> list[str]:
    """What this machine lacks to run a real hub (empty when everything is there)."""
    missing = []
    for module in ("jupyterhub", "jupyter_server", "ipykernel", "tornado"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module} (pip install jupyterhub jupyterlab)")
    if shutil.which("configurable-http-proxy") is None:
        missing.append("configurable-http-proxy (npm install -g configurable-http-proxy)")
    if not _singleuser_command():
        missing.append("jupyterhub-singleuser next to this Python (pip install jupyterhub)")
    if shutil.which("runway-widget", path=_search_path()) is None:
        missing.append('the runway-widget command (pip install -e ".[test]")')
    return missing


def _search_path() -> str:
    """PATH with this Python's own scripts first, so the hub starts this install's commands."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def hub_environment() -> dict[str, str]:
    """The hub's environment: this one, with this install's commands first and no upstream
    key or hub token of the caller's."""
    env = {**os.environ, "PATH": _search_path()}
    env.pop("APIFRAME_API_KEY", None)
    env.pop("JUPYTERHUB_API_TOKEN", None)
    return env


def container_environment() -> dict[str, str]:
    """What a process of its own needs from here to run this install: nothing else."""
    keep = ("PYTHONPATH", "HOME", "LANG", "TMPDIR")
    return {"PATH": _search_path(), **{name: os.environ[name] for name in keep
                                       if name in os.environ}}


def spawner_args() -> list[str]:
    """jupyterhub-singleuser refuses to run as root without ``--allow-root``."""
    return ["--allow-root"] if os.geteuid() == 0 else []


def _singleuser_command() -> str | None:
    candidate = Path(sys.executable).parent / "jupyterhub-singleuser"
    return str(candidate) if candidate.exists() else shutil.which("jupyterhub-singleuser")


class HubError(AssertionError):
    """The hub did not do what the harness asked; carries the hub's log tail."""


@dataclass
class KernelResult:
    """What one execute request printed, and its error (ename, evalue) if it raised."""

    stdout: str
    error: tuple[str, str] | None = None
    traceback: list[str] = field(default_factory=list)

    def last_json(self) -> Any:
        """The last printed line, parsed as JSON (the test's cells end with one)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if not lines:
            raise HubError(f"the cell printed nothing; error: {self.error} {self.traceback}")
        return json.loads(lines[-1])


class JupyterHubUnderTest:
    """A jupyterhub process tree in `state_dir`, stopped by `stop()` (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        gateway_config: Mapping[str, Any],
        admins: Iterable[str] = (),
        groups: Mapping[str, Iterable[str]] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.address = "127.0.0.1"  # where the hub and its proxy listen
        self.public_port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.gateway_port = free_port()
        self.admin_token = secrets.token_hex(32)
        self.admins = set(admins)
        self.groups = {name: {"users": list(users)} for name, users in (groups or {}).items()}
        self.gateway_config = dict(gateway_config)
        self.log_path = state_dir / "jupyterhub.log"
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        # Processes seen below the hub (pid -> start time): killed if it leaves them behind.
        self._children: dict[int, str] = {}

    # -- addresses -----------------------------------------------------------------------------

    @property
    def public_url(self) -> str:
        return f"http://{self.address}:{self.public_port}"

    @property
    def gateway_url(self) -> str:
        """The gateway through the hub's proxy, as a browser reaches it."""
        return f"{self.public_url}/services/{SERVICE}/"

    @property
    def gateway_direct_url(self) -> str:
        """The gateway straight on its own port, as the kernels reach it."""
        return f"http://127.0.0.1:{self.gateway_port}/services/{SERVICE}/"

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> JupyterHubUnderTest:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "home").mkdir(exist_ok=True)
        gateway_config = self.state_dir / "runway-gateway.json"
        gateway_config.write_text(json.dumps(self.gateway_config))
        config_file = self.state_dir / "jupyterhub_config.py"
        config_file.write_text(
            HUB_CONFIG.format(
                public=self.public_port,
                hub=self.hub_port,
                proxy_api=self.proxy_api_port,
                state=self.state_dir,
                admins=self.admins,
                singleuser=_singleuser_command(),
                spawner_args=spawner_args(),
                groups=self.groups,
                admin_service=ADMIN_SERVICE,
                admin_token=self.admin_token,
                instructor=str(INSTRUCTOR_CONFIG),
            )
        )
        env = {
            **hub_environment(),
            "RUNWAY_GATEWAY_PORT": str(self.gateway_port),
            "RUNWAY_GATEWAY_CONFIG": str(gateway_config),
            "RUNWAY_GATEWAY_UPSTREAM": "demo",
            "RUNWAY_WIDGET_HOME": str(self.state_dir / "gateway-home"),
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
            **self._extra_env,
        }
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config_file)],
                cwd=self.state_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until(lambda: self._api_answers("/hub/api/"), timeout, "the hub API")
            self._wait_until(
                lambda: self._url_answers(f"{self.gateway_direct_url}health"), timeout,
                "the gateway service",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the hub (it stops servers and services), then kill any orphan left."""
        process, self._process = self._process, None
        if process is None:
            return
        children = {**self._children, **_descendants(process.pid)}
        self._children = {}
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for pid, started in children.items():
            if _start_time(pid) == started:  # still that process, not a reused pid
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> JupyterHubUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The gateway's own lines (the proxy's retries drown them), then the log's last lines."""
        try:
            every = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        gateway = [line for line in every if "runway" in line.lower() or "error:" in line][:20]
        return "\n".join(["-- gateway --", *gateway, "-- last lines --", *every[-lines:]])

    # -- the hub's REST API --

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """One call to the hub's REST API (as the e2e-admin service unless `token` is given)."""
        status, payload = self.request(
            method, f"{self.public_url}/hub/api{path}", body, token=token or self.admin_token
        )
        if status >= 400:
            raise HubError(f"{method} {path} -> HTTP {status}: {payload}\n{self.log_tail()}")
        return payload

    @staticmethod
    def request(
        method: str,
        url: str,
        body: Any = None,
        *,
        token: str | None = None,
        authorization: str | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one HTTP call; never raises for an HTTP status."""
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        elif token is not None:
            headers["Authorization"] = f"token {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def start_servers(self, users: Iterable[str], timeout: float = 90.0) -> None:
        """Create the users if needed, spawn their default servers together, wait for all."""
        users = list(users)
        for user in users:
            status, _ = self.request(
                "GET", f"{self.public_url}/hub/api/users/{user}", token=self.admin_token
            )
            if status == 404:
                self.api("POST", f"/users/{user}")
            self.api("POST", f"/users/{user}/server")
        for user in users:
            self._wait_until(lambda u=user: self._server_ready(u), timeout, f"{user}'s server")

    def user_token(self, user: str, scopes: list[str] | None = None) -> str:
        """A new API token owned by `user` (all of the user's own scopes unless narrowed)."""
        body: dict[str, Any] = {"note": "e2e"}
        if scopes is not None:
            body["scopes"] = scopes
        return self.api("POST", f"/users/{user}/tokens", body)["token"]

    # -- code in a user's kernel ---------------------------------------------------------------

    def start_kernel(self, user: str) -> str:
        status, kernel = self.request(
            "POST", f"{self.public_url}/user/{user}/api/kernels", {"name": "python3"},
            token=self.admin_token,
        )
        if status != 201:
            raise HubError(f"no kernel for {user}: HTTP {status} {kernel}\n{self.log_tail()}")
        return kernel["id"]

    def execute(self, user: str, kernel_id: str, code: str, timeout: float = 120.0) -> KernelResult:
        """Run `code` in the user's kernel over its websocket; what it printed and raised.

        The websocket runs on an event loop of its own thread, so this works from any
        caller (Playwright's sync API keeps a loop running on the test's thread).
        """
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._execute(user, kernel_id, code, timeout)).result()

    async def _execute(self, user: str, kernel_id: str, code: str, timeout: float) -> KernelResult:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = f"ws://{self.address}:{self.public_port}/user/{user}/api/kernels/{kernel_id}/channels"
        request = HTTPRequest(url, headers={"Authorization": f"token {self.admin_token}"})
        connection = await asyncio.wait_for(websocket_connect(request), 30)
        msg_id = uuid.uuid4().hex
        connection.write_message(json.dumps(_execute_request(msg_id, code)))
        stdout: list[str] = []
        result = KernelResult("")
        replied = idle = False
        deadline = time.monotonic() + timeout
        try:
            while not (replied and idle):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HubError(f"no answer from {user}'s kernel within {timeout} s: "
                                   f"{''.join(stdout)[-2000:]}")
                raw = await asyncio.wait_for(connection.read_message(), remaining)
                if raw is None:
                    raise HubError(f"{user}'s kernel websocket closed\n{self.log_tail()}")
                if isinstance(raw, bytes):  # a message with buffers (widgets'): not ours
                    continue
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    stdout.append(content["text"])
                elif kind == "error":
                    result.error = (content["ename"], content["evalue"])
                    result.traceback = content.get("traceback", [])
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
        finally:
            connection.close()
        result.stdout = "".join(stdout)
        return result

    # -- waiting -------------------------------------------------------------------------------

    def _wait_until(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None:
                self._children.update(_descendants(self._process.pid))
                if self._process.poll() is not None:
                    raise HubError(
                        f"jupyterhub exited while waiting for {what}:\n{self.log_tail()}"
                    )
            if ready():
                return
            time.sleep(0.2)
        raise HubError(f"{what} not ready within {timeout} s:\n{self.log_tail()}")

    def _api_answers(self, path: str) -> bool:
        try:
            status, _ = self.request("GET", self.public_url + path, token=self.admin_token,
                                     timeout=2)
        except (urllib.error.URLError, OSError):
            return False
        return status == 200

    @staticmethod
    def _url_answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _server_ready(self, user: str) -> bool:
        model = self.api("GET", f"/users/{user}")
        server = model.get("servers", {}).get("")
        return bool(server and server.get("ready"))


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "e2e",
            "session": uuid.uuid4().hex,
            "version": "5.3",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }


def _descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (servers, kernels, proxy, services) with its start time."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            started[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.update({child: started[child] for child in children})
        frontier.extend(children)
    return found


def _start_time(pid: int) -> str | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
