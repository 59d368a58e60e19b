"""The Zero to JupyterHub chart's own hub code, run on one machine with the project's values.

In a cluster the chart renders its Helm values into the Secret ``hub`` and its resource names
into the ConfigMap ``hub``, mounts both under ``/usr/local/etc/jupyterhub/`` and starts
JupyterHub with its ``jupyterhub_config.py``, which reads them through ``z2jh.py``.
`ChartMount` lays out the same files in a folder; the one change to the chart's code
(vendored unchanged in ``tests/z2jh/``) is that folder in place of ``/usr/local/etc/jupyterhub``.

What only a cluster has is stood in for, and nothing else: Kubernetes' Service variables and
names become 127.0.0.1 and free ports, KubeSpawner's pods become local processes (a spawner
class named ``KubeSpawner``, so the chart's ``c.KubeSpawner`` settings still apply to it), the
proxy pod is a configurable-http-proxy started as the chart's proxy Deployment starts it, and
`Kubelet` starts a container of ``docs/z2jh/gateway.yaml`` as a process: its arguments,
its environment (Secrets resolved from a dictionary) and its ConfigMap volumes.

The hub runs on this Python's JupyterHub; ``Z2JH_HUB_PYTHON=/path/to/python`` runs it on
another one, such as a virtualenv with the JupyterHub the chart's image ships (5.5.0 for 4.4.0,
with pycurl, kubernetes_asyncio and PyYAML).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import hub_harness
import yaml
from round_robin import RoundRobin

ROOT = Path(__file__).resolve().parent.parent
CHART = Path(__file__).resolve().parent / "z2jh"
DOCS = ROOT / "docs" / "z2jh"
CHART_INFO = {"Name": "jupyterhub", "Version": "4.4.0", "AppVersion": "5.5.0"}
RELEASE = {"Name": "jhub", "Namespace": "jhub", "Service": "Helm"}
MOUNT = "/usr/local/etc/jupyterhub"
SERVICE = hub_harness.SERVICE
# The chart's resource names (jupyterhub.name-templates) with its default fullnameOverride "".
NAMES = {
    "fullname": "",
    "fullname-dash": "",
    "hub": "hub",
    "hub-existing-secret": "",
    "hub-existing-secret-or-default": "hub",
    "proxy": "proxy",
    "proxy-api": "proxy-api",
    "proxy-http": "proxy-http",
    "proxy-public": "proxy-public",
    "singleuser": "singleuser",
    "image-pull-secret": "image-pull-secret",
    "user-scheduler": f"{RELEASE['Name']}-user-scheduler",
    "priority": f"{RELEASE['Name']}-default-priority",
}

# -- values as Helm merges them ----------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def helm_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over others: maps merge, the rest replaces, null
    removes."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's defaults with each layer merged over them, as ``helm -f a -f b`` does."""
    values = load_yaml(CHART / "values.yaml")
    for layer in layers:
        values = helm_merge(values, layer)
    return values


# -- what Kubernetes does with a container spec ------------------------------------------------


def resolve_env(env: Iterable[Any] | Mapping[str, Any], store: Mapping[str, Mapping[str, str]]
                ) -> dict[str, str]:
    """A container's environment: literal values, and ``secretKeyRef``s looked up in `store`
    (Secret name -> key -> value). Takes a pod spec's list or the chart's ``extraEnv`` map."""
    if isinstance(env, Mapping):
        env = [
            {"name": name, **(spec if isinstance(spec, Mapping) else {"value": spec})}
            for name, spec in env.items()
        ]
    resolved = {}
    for entry in env:
        if "value" in entry:
            resolved[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            resolved[entry["name"]] = store[ref["name"]][ref["key"]]
    return resolved


def expand(argument: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of a container argument."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), argument)


def dockerfile_entrypoint(path: Path = ROOT / "Dockerfile") -> list[str]:
    """The image's ENTRYPOINT (exec form)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    return json.loads(lines[-1].split(" ", 1)[1])


def relocate(value: Any, old: str, new: str) -> Any:
    """`value` with every string starting with `old` starting with `new` instead."""
    if isinstance(value, Mapping):
        return {key: relocate(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [relocate(item, old, new) for item in value]
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old):]
    return value


# -- the hub pod's /usr/local/etc/jupyterhub ---------------------------------------------------


class ChartMount:
    """The chart's ConfigMap and Secret as the hub pod sees them, in `root`."""

    def __init__(self, root: Path, values: Mapping[str, Any]) -> None:
        self.root = root
        self.values = relocate(values, MOUNT, str(root))
        self.secret: dict[str, str] = {}

    @property
    def config_file(self) -> Path:
        return self.root / "jupyterhub_config.py"

    def write(self) -> ChartMount:
        for name in ("jupyterhub_config.py", "z2jh.py"):
            code = (CHART / name).read_text()
            assert MOUNT in code, f"the chart's {name} no longer reads {MOUNT}"
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_text(code.replace(MOUNT, str(self.root)))
        for name, resource in NAMES.items():
            self._file(f"config/{name}", resource)
        self.secret = self._secret_data()
        for key, text in self.secret.items():
            self._file(f"secret/{key}", text)
        for spec in (self.values["hub"].get("extraFiles") or {}).values():
            self._extra_file(spec)
        return self

    def _secret_data(self) -> dict[str, str]:
        """The Secret ``hub`` as templates/hub/secret.yaml renders it on a first install."""
        data = {
            "values.yaml": yaml.safe_dump({**self.values, "Chart": CHART_INFO, "Release": RELEASE}),
            "hub.config.ConfigurableHTTPProxy.auth_token": secrets.token_hex(32),
            "hub.config.JupyterHub.cookie_secret": secrets.token_hex(32),
            "hub.config.CryptKeeper.keys": secrets.token_hex(32),
        }
        for key, service in (self.values["hub"].get("services") or {}).items():
            given = service.get("apiToken") or service.get("api_token")
            data[f"hub.services.{key}.apiToken"] = given or secrets.token_hex(32)
        return data

    def _extra_file(self, spec: Mapping[str, Any]) -> None:
        path = Path(spec["mountPath"])
        assert path.is_relative_to(self.root), f"{path} is outside the hub's config folder"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = spec.get("stringData")
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(spec["data"]))

    def _file(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- one container of a manifest, as a local process -------------------------------------------


class Kubelet:
    """Runs a Deployment's first container from `documents` as a process, in `folder`.

    Secrets come from `store`; ConfigMap volumes are written from the documents, a
    PersistentVolumeClaim is the folder of its name in `claims` (every pod mounting the claim
    shares it), other volumes are empty folders of this pod's; `addresses` maps cluster
    addresses (``host:port``) to local ones, and an argument naming one of the container's
    ports becomes a free port here.
    """

    def __init__(
        self,
        documents: list[dict[str, Any]],
        folder: Path,
        store: Mapping[str, Mapping[str, str]],
        addresses: Mapping[str, str],
        claims: Path | None = None,
    ) -> None:
        self.documents = documents
        self.folder = folder
        self.store = store
        self.addresses = addresses
        self.claims = claims or folder / "claims"

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The container's command line and environment, with paths and addresses made local."""
        pod = self._find("Deployment")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mounts = self._volumes(pod, container)
        env = {
            name: self._local(value, mounts)
            for name, value in resolve_env(container.get("env", []), self.store).items()
        }
        entrypoint = dockerfile_entrypoint()
        program = shutil.which(entrypoint[0], path=env.get("PATH") or hub_harness._search_path())
        assert program, f"{entrypoint[0]} is not installed"
        ports = {str(port["containerPort"]): str(hub_harness.free_port())
                 for port in container.get("ports", [])}
        args = [ports.get(arg, self._local(expand(arg, env), mounts))
                for arg in container.get("args", [])]
        return [program, *entrypoint[1:], *args], env

    def _find(self, kind: str, name: str | None = None) -> dict[str, Any]:
        for doc in self.documents:
            if doc["kind"] == kind and name in (None, doc["metadata"]["name"]):
                return doc
        raise AssertionError(f"no {kind} {name or ''} in the manifest")

    def _volumes(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        """mountPath -> local folder, ConfigMaps' data written into theirs."""
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        mounts = {}
        for mount in container.get("volumeMounts", []):
            local = self.folder / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            source = volumes[mount["name"]]
            if "configMap" in source:
                data = self._find("ConfigMap", source["configMap"]["name"])["data"]
                for key, text in data.items():
                    (local / key).write_text(text)
            elif "persistentVolumeClaim" in source:
                self._find("PersistentVolumeClaim", source["persistentVolumeClaim"]["claimName"])
                local = self.claims / source["persistentVolumeClaim"]["claimName"]
                local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/")] = str(local)
        return mounts

    def _local(self, value: str, mounts: Mapping[str, str]) -> str:
        for path, local in mounts.items():
            if value == path or value.startswith(path + "/"):
                value = local + value[len(path):]
                break
        for cluster, local in self.addresses.items():
            value = value.replace(f"//{cluster}", f"//{local}")
        return value


# -- a hub started from the chart's configuration ---------------------------------------------

LOCAL_OVERRIDES = """\
c = get_config()  # noqa
load_subconfig({chart_config!r})

# What a cluster would provide, on one machine.
from jupyterhub.spawner import SimpleLocalProcessSpawner


class KubeSpawner(SimpleLocalProcessSpawner):
    \"\"\"Takes the chart's c.KubeSpawner settings; a server is a local process, not a pod.\"\"\"


c.JupyterHub.spawner_class = KubeSpawner
c.KubeSpawner.home_dir_template = "{state}/home/{{username}}"
c.KubeSpawner.args = {spawner_args!r}
c.KubeSpawner.http_timeout = 60
c.KubeSpawner.ip = "{servers}"  # the user pods' addresses
c.JupyterHub.hub_bind_url = "http://{address}:{hub}"  # the hub container's port 8081
c.JupyterHub.hub_connect_url = "http://{address}:{hub}"  # the Service "hub"
c.ConfigurableHTTPProxy.api_url = "http://{address}:{proxy_api}"  # the Service "proxy-api"
c.JupyterHub.cleanup_servers = True  # pods outlive a hub; processes here must not
"""


class ChartHub(hub_harness.JupyterHubUnderTest):
    """The chart's hub and proxy, with `values` (docs/z2jh files) and, for the externally
    managed form, the gateway container of ``docs/z2jh/gateway.yaml``."""

    def __init__(
        self,
        state_dir: Path,
        values: list[Mapping[str, Any]],
        *,
        manifest: list[dict[str, Any]] | None = None,
        upstream_key: str = "",
        address: str = "127.0.0.1",
        servers: str = "127.0.0.1",
    ) -> None:
        super().__init__(state_dir, gateway_config={})
        self.address = address  # the hub pod's and the proxy pod's, on one machine
        self.servers = servers
        self.values_files = values
        self.manifest = manifest
        self.upstream_key = upstream_key
        self.mount: ChartMount | None = None
        self._side: list[subprocess.Popen[bytes]] = []

    @property
    def gateway_direct_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/services/{SERVICE}/"

    @property
    def service_url(self) -> str:
        """Where the hub's proxy sends ``/services/runway-gateway/`` (the Service)."""
        return f"http://127.0.0.1:{self.gateway_port}"

    def test_values(self) -> dict[str, Any]:
        """The test's own layer: local addresses and paths, a driver service, no culler
        (its URL is the hub pod's fixed port 8081)."""
        service: dict[str, Any] = {"url": self.service_url}
        managed = self._merged()["hub"]["services"][SERVICE].get("command")
        if managed:
            service["command"] = [shutil.which("runway-widget", path=hub_harness._search_path()),
                                  *managed[1:]]
            service["environment"] = {"RUNWAY_WIDGET_HOME": str(self.state_dir / "gateway-home")}
        return {
            "cull": {"enabled": False},
            "hub": {
                "config": {"Authenticator": {"allow_all": True}},
                "services": {
                    SERVICE: service,
                    hub_harness.ADMIN_SERVICE: {"apiToken": self.admin_token},
                },
                "loadRoles": {"e2e-admin-role": {
                    "services": [hub_harness.ADMIN_SERVICE],
                    "scopes": ["admin:users", "admin:servers", "tokens", "access:servers",
                               "list:services", "read:services"],
                }},
            },
        }

    def _merged(self) -> dict[str, Any]:
        return chart_values(*self.values_files)

    @property
    def secret_store(self) -> dict[str, dict[str, str]]:
        """The namespace's Secrets: the chart's and the instructor's."""
        return {
            "hub": self.mount.secret if self.mount else {},
            SERVICE: {
                "apiframe-api-key": self.upstream_key,
                "database-url": f"sqlite:///{self.state_dir / 'gateway.sqlite3'}",
            },
        }

    def start(self, timeout: float = 90.0) -> ChartHub:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "home").mkdir(exist_ok=True)
        values = chart_values(*self.values_files, self.test_values())
        self.mount = ChartMount(self.state_dir / "etc-jupyterhub", values).write()
        try:
            self._start_proxy()
            self._start_hub()
            if self.manifest is not None:
                self._start_gateway_container()
            self._wait_until(lambda: self._api_answers("/hub/api/"), timeout, "the hub API")
            self._wait_until(lambda: self._url_answers(f"{self.gateway_url}health"), timeout,
                             "the gateway through the proxy")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_proxy(self) -> None:
        """configurable-http-proxy as templates/proxy/deployment.yaml runs it."""
        hub = f"http://{self.address}:{self.hub_port}"
        self._side.append(self._spawn(
            [shutil.which("configurable-http-proxy") or "configurable-http-proxy",
             f"--ip={self.address}", f"--api-ip={self.address}",
             f"--api-port={self.proxy_api_port}",
             f"--default-target={hub}", f"--error-target={hub}/hub/error",
             f"--port={self.public_port}"],
            {"CONFIGPROXY_AUTH_TOKEN": self._proxy_token()},
        ))

    def _start_hub(self) -> None:
        """The hub container: the chart's arguments, env and ``hub.extraEnv``."""
        assert self.mount is not None
        overrides = self.state_dir / "local_overrides.py"
        overrides.write_text(LOCAL_OVERRIDES.format(
            chart_config=str(self.mount.config_file), state=self.state_dir,
            spawner_args=hub_harness.spawner_args(), hub=self.hub_port,
            proxy_api=self.proxy_api_port, address=self.address, servers=self.servers,
        ))
        env = {
            "CONFIGPROXY_AUTH_TOKEN": self._proxy_token(),
            "POD_NAMESPACE": RELEASE["Namespace"],
            "HELM_RELEASE_NAME": RELEASE["Name"],
            # Kubernetes' variables for the Services "hub" and "proxy-api"
            "HUB_SERVICE_PORT": str(self.hub_port),
            "PROXY_API_SERVICE_PORT": str(self.proxy_api_port),
            **resolve_env(self.mount.values["hub"].get("extraEnv") or {}, self.secret_store),
        }
        python = os.environ.get("Z2JH_HUB_PYTHON") or sys.executable
        self._process = self._spawn([python, "-m", "jupyterhub", "-f", str(overrides)],
                                    env, inherit=True)

    def _start_gateway_container(self) -> None:
        assert self.manifest is not None
        kubelet = Kubelet(
            self.manifest, self.state_dir / "gateway", self.secret_store,
            {"hub:8081": f"{self.address}:{self.hub_port}",
             "0.0.0.0:8765": f"127.0.0.1:{self.gateway_port}"},
        )
        command, env = kubelet.command()
        self.gateway_command = command
        self._side.append(self._spawn(command, env))

    def _proxy_token(self) -> str:
        assert self.mount is not None
        return self.mount.secret["hub.config.ConfigurableHTTPProxy.auth_token"]

    def _spawn(self, command: list[str], env: Mapping[str, str], *, inherit: bool = False
               ) -> subprocess.Popen[bytes]:
        """A process logging into the hub's log; only PATH and PYTHONPATH come from here
        unless `inherit` (the hub is started as the existing harness starts it)."""
        base = hub_harness.hub_environment() if inherit else hub_harness.container_environment()
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command, cwd=self.state_dir, env={**base, **env}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def _wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        def side_alive_and_ready() -> bool:
            for process in self._side:
                if process.poll() is not None:
                    raise hub_harness.HubError(
                        f"{process.args[0]} exited while waiting for {what}:\n{self.log_tail()}"
                    )
            return ready()

        super()._wait_until(side_alive_and_ready, timeout, what)

    def stop(self) -> None:
        super().stop()
        side, self._side = self._side, []
        for process in side:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in side:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


# -- gateway.yaml's replicas behind their Service ----------------------------------------------


class ReplicatedChartHub(ChartHub):
    """The externally managed form with each replica of ``gateway.yaml``'s Deployment as a
    process on a loopback address of its own, behind a `RoundRobin` standing in for their
    Service, on one PostgreSQL (`database_url`) and one folder for the ReadWriteMany claim.

    The hub and the proxy share `address`, users' servers listen on `servers`, and kernels
    are given only the proxy's URL (what ``http://proxy-public/`` is in the cluster). The
    replicas take `extra_args` after the manifest's (the upstream, a short heartbeat).
    """

    def __init__(
        self,
        state_dir: Path,
        values: list[Mapping[str, Any]],
        *,
        manifest: list[dict[str, Any]],
        upstream_key: str,
        database_url: str,
        replicas: list[str],
        balancer: str,
        extra_args: list[str],
        admins: list[str],
        address: str,
        servers: str,
    ) -> None:
        super().__init__(state_dir, values, manifest=manifest, upstream_key=upstream_key,
                         address=address, servers=servers)
        self.database_url = database_url
        self.replica_urls = [f"http://{host}:{hub_harness.free_port()}" for host in replicas]
        self.balancer = RoundRobin(self.replica_urls, balancer, self.gateway_port)
        self.extra_args = extra_args
        self.hub_admins = admins
        self.replicas: list[subprocess.Popen[bytes] | None] = []
        self._commands: list[tuple[list[str], dict[str, str]]] = []

    @property
    def service_url(self) -> str:
        return self.balancer.url

    @property
    def secret_store(self) -> dict[str, dict[str, str]]:
        store = super().secret_store
        store[SERVICE]["database-url"] = self.database_url
        return store

    def replica_url(self, index: int) -> str:
        return f"{self.replica_urls[index]}/services/{SERVICE}/"

    def test_values(self) -> dict[str, Any]:
        kernels = {"RUNWAY_GATEWAY_URL": self.gateway_url}  # the proxy's address, nothing else
        return helm_merge(super().test_values(), {
            "hub": {"config": {"Authenticator": {"admin_users": self.hub_admins}}},
            "singleuser": {"extraEnv": kernels},
        })

    def _start_gateway_container(self) -> None:
        count = self.manifest_replicas()
        assert count == len(self.replica_urls), (count, self.replica_urls)
        self.balancer.start()
        for index, url in enumerate(self.replica_urls):
            kubelet = Kubelet(
                self.manifest, self.state_dir / f"replica-{index}", self.secret_store,
                {"hub:8081": f"{self.address}:{self.hub_port}",
                 "0.0.0.0:8765": url.split("//", 1)[1]},
                claims=self.state_dir / "claims",
            )
            command, env = kubelet.command()
            self._commands.append(([*command, *self.extra_args], env))
            self.replicas.append(None)
            self.start_replica(index)

    def manifest_replicas(self) -> int:
        assert self.manifest is not None
        deployment = next(doc for doc in self.manifest if doc["kind"] == "Deployment")
        return int(deployment["spec"]["replicas"])

    def start_replica(self, index: int, timeout: float = 60.0) -> None:
        """Start (or restart, as Kubernetes restarts a pod) replica `index`; wait until ready."""
        command, env = self._commands[index]
        process = self._spawn(command, env)
        self.replicas[index] = process
        self._side.append(process)
        self._wait_until(lambda: self._url_answers(self.replica_url(index) + "ready"), timeout,
                         f"replica {index}")

    def kill_replica(self, index: int) -> None:
        """SIGKILL replica `index`, as a node failing takes a pod: no goodbye."""
        process = self.replicas[index]
        assert process is not None and process.poll() is None
        self._side.remove(process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.replicas[index] = None

    def stop(self) -> None:
        super().stop()
        self.balancer.stop()
