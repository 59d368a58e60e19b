"""docs/z2jh offline: the chart's schema takes our values, Kubernetes' schemas take our
manifests, and they state what a workshop needs (probes, non-root, Secrets, one name and one
port everywhere, no key in values). What needs a cluster is in test_z2jh_hub.py and the
README."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import z2jh_support as z2jh

from runway_widget.gateway.room_config import RoomConfig

KUBERNETES = ("1.28.0", kubernetes_validate.latest_version())  # the chart's oldest, the newest
SECRET_ENV = ("APIFRAME_API_KEY", "JUPYTERHUB_API_TOKEN", "RUNWAY_GATEWAY_DB")
VALUES = z2jh.load_yaml(z2jh.DOCS / "values.yaml")
HUB_MANAGED = z2jh.load_yaml(z2jh.DOCS / "values-hub-managed.yaml")
MANIFEST = z2jh.load_documents(z2jh.DOCS / "gateway.yaml")
SCOPE = f"access:services!service={z2jh.SERVICE}"
PREFIX = f"/services/{z2jh.SERVICE}/"


def _kind(kind: str) -> dict[str, Any]:
    return next(doc for doc in MANIFEST if doc["kind"] == kind)


DEPLOYMENT = _kind("Deployment")
POD = DEPLOYMENT["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]
ENV = {entry["name"]: entry for entry in CONTAINER["env"]}


def _schema_errors(values: dict[str, Any]) -> list[str]:
    schema = z2jh.load_yaml(z2jh.CHART / "values.schema.yaml")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(values)]


@pytest.mark.parametrize("layers", [[VALUES], [VALUES, HUB_MANAGED]],
                         ids=["external", "hub-managed"])
def test_the_charts_schema_takes_our_values(layers: list[dict[str, Any]]) -> None:
    assert _schema_errors(z2jh.chart_values(*layers)) == []


def test_the_schema_check_catches_a_misplaced_setting() -> None:
    misplaced = z2jh.chart_values(VALUES, {"hub": {"loadRole": {"user": {"scopes": [SCOPE]}}}})
    assert any("loadRole" in error for error in _schema_errors(misplaced))


@pytest.mark.parametrize("version", KUBERNETES)
def test_kubernetes_schemas_take_the_manifest_and_the_charts_extra_rules(version: str) -> None:
    for doc in MANIFEST:
        kubernetes_validate.validate(doc, version, strict=True)
    # the rules and variables our values hand to the chart's own NetworkPolicies and pods
    merged = z2jh.chart_values(VALUES, HUB_MANAGED)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "from-values"},
        "spec": {
            "podSelector": {},
            "egress": VALUES["proxy"]["chp"]["networkPolicy"]["egress"]
            + HUB_MANAGED["proxy"]["chp"]["networkPolicy"]["egress"],
            "ingress": HUB_MANAGED["hub"]["networkPolicy"]["ingress"],
        },
    }
    kubernetes_validate.validate(policy, version, strict=True)
    pod = copy.deepcopy(DEPLOYMENT)
    pod["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": name, **(spec if isinstance(spec, dict) else {"value": spec})}
        for name, spec in {**merged["hub"]["extraEnv"], **merged["singleuser"]["extraEnv"]}.items()
    ]
    kubernetes_validate.validate(pod, version, strict=True)


def test_the_gateway_runs_as_two_non_root_replicas_with_probes_and_requests() -> None:
    assert DEPLOYMENT["spec"]["replicas"] == 2
    security = POD["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert CONTAINER["securityContext"]["allowPrivilegeEscalation"] is False
    assert CONTAINER["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # ready while the database answers, alive while the process does (see gateway.monitoring)
    for probe, path in (("readinessProbe", "ready"), ("livenessProbe", "health")):
        check = CONTAINER[probe]["httpGet"]
        assert check["path"] == PREFIX + path and check["port"] == "http", probe
    assert set(CONTAINER["resources"]["requests"]) == {"cpu", "memory"}
    # the image runs as the same non-root user, and the arguments are the serve command's
    dockerfile = (z2jh.ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users[-1] == str(security["runAsUser"])
    assert z2jh.dockerfile_entrypoint() == ["runway-widget", "gateway", "serve"]
    assert CONTAINER["args"][0] == "--jupyterhub"


def test_the_replicas_share_clips_on_a_read_write_many_claim_and_no_affinity() -> None:
    args = CONTAINER["args"]
    clips = args[args.index("--clips") + 1]
    (mount,) = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == clips]
    (volume,) = [v for v in POD["volumes"] if v["name"] == mount["name"]]
    claim = _kind("PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "sessionAffinity" not in _kind("Service")["spec"]  # any replica answers anything


def test_metrics_have_a_port_of_their_own_that_only_prometheus_reaches() -> None:
    args = CONTAINER["args"]
    port = int(args[args.index("--metrics-port") + 1])
    ports = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    assert ports["metrics"] == port != ports["http"]
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    allowed = {
        rule["ports"][0]["port"]: rule["from"] for rule in _kind("NetworkPolicy")["spec"]["ingress"]
    }
    assert set(allowed) == {"http", "metrics"}
    assert "namespaceSelector" in allowed["metrics"][0]  # not the proxy: it never routes there
    assert args[args.index("--log-format") + 1] == "json"


@pytest.mark.parametrize("command", [CONTAINER["args"],
                                     HUB_MANAGED["hub"]["services"][z2jh.SERVICE]["command"]],
                         ids=["external", "hub-managed"])
def test_the_proxy_pod_is_trusted_for_forwarded_addresses(command: list[str]) -> None:
    """Bound to 0.0.0.0, the gateway trusts no proxy by default: every participant would
    share the proxy pod's address (connection slots, the join guard)."""
    trusted = [command[i + 1] for i, word in enumerate(command) if word == "--trusted-proxy"]
    assert trusted == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def test_every_secret_comes_from_a_kubernetes_secret() -> None:
    for name in SECRET_ENV:
        assert "value" not in ENV[name] and "secretKeyRef" in ENV[name]["valueFrom"], name
    token = ENV["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    # the chart's Secret, under the key its secret template writes for the service
    assert token == {"name": "hub", "key": f"hub.services.{z2jh.SERVICE}.apiToken"}
    managed_key = HUB_MANAGED["hub"]["extraEnv"]["APIFRAME_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert managed_key == ENV["APIFRAME_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert "$(RUNWAY_GATEWAY_DB)" in CONTAINER["args"]  # not written into the pod spec


def test_no_key_or_token_is_written_in_the_values_or_the_manifest() -> None:
    for document in (VALUES, HUB_MANAGED, *MANIFEST):
        for path, node in _mappings(document):
            assert not {"apiToken", "api_token", "secretToken", "cookieSecret"} & set(node), path
            if node.get("name") in SECRET_ENV:  # a pod spec's env entry
                assert "value" not in node, path
            for name in set(SECRET_ENV) & set(node):  # the chart's extraEnv map
                assert set(node[name]) == {"valueFrom"}, path
    service = VALUES["hub"]["services"][z2jh.SERVICE]
    assert set(service) <= {"url", "oauth_no_confirm", "display", "info"}


def test_one_name_one_prefix_and_one_port_from_the_proxy_to_the_gateway() -> None:
    service_doc = _kind("Service")
    url = VALUES["hub"]["services"][z2jh.SERVICE]["url"]
    port = service_doc["spec"]["ports"][0]["port"]
    assert url == f"http://{service_doc['metadata']['name']}:{port}"
    assert ENV["JUPYTERHUB_SERVICE_NAME"]["value"] == z2jh.SERVICE
    assert ENV["JUPYTERHUB_SERVICE_PREFIX"]["value"] == PREFIX
    assert ENV["JUPYTERHUB_CLIENT_ID"]["value"] == f"service-{z2jh.SERVICE}"
    assert ENV["JUPYTERHUB_SERVICE_URL"]["value"] == f"http://0.0.0.0:{port}"
    assert ENV["JUPYTERHUB_API_URL"]["value"] == "http://hub:8081/hub/api"
    assert VALUES["singleuser"]["extraEnv"]["RUNWAY_GATEWAY_URL"] == "http://proxy-public" + PREFIX

    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert labels["hub.jupyter.org/network-access-hub"] == "true"  # gateway -> hub API
    (egress,) = VALUES["proxy"]["chp"]["networkPolicy"]["egress"]  # proxy -> gateway
    assert egress["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()
    assert egress["ports"][0]["port"] == CONTAINER["ports"][0]["containerPort"] == port
    ingress = _kind("NetworkPolicy")["spec"]["ingress"][0]  # the gateway lets the proxy in
    assert ingress["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/component": "proxy"}


def test_the_scope_goes_to_the_server_role_and_to_every_user() -> None:
    roles = VALUES["hub"]["loadRoles"]
    assert SCOPE in roles["server"]["scopes"] and SCOPE in roles["user"]["scopes"]
    # overriding a default role replaces its scopes: keep JupyterHub's own
    assert {"users:activity!user", "access:servers!server"} <= set(roles["server"]["scopes"])
    assert "self" in roles["user"]["scopes"]


def test_hub_managed_one_port_from_the_proxy_to_the_hub_pod() -> None:
    hub = HUB_MANAGED["hub"]
    service = hub["services"][z2jh.SERVICE]
    port = int(service["url"].rsplit(":", 1)[1])
    assert service["url"] == f"http://hub:{port}"
    assert [p["port"] for p in hub["service"]["extraPorts"]] == [port]
    assert hub["service"]["extraPorts"][0]["targetPort"] == port
    assert hub["networkPolicy"]["ingress"][0]["ports"][0]["port"] == port
    (egress,) = HUB_MANAGED["proxy"]["chp"]["networkPolicy"]["egress"]
    assert egress["ports"][0]["port"] == port
    assert egress["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "hub"
    command = service["command"]
    assert command[1:4] == ["gateway", "serve", "--jupyterhub"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # the proxy is another pod
    config = command[command.index("--config") + 1]
    assert [f["mountPath"] for f in hub["extraFiles"].values()] == [config]
    assert "APIFRAME_API_KEY" in hub["extraConfig"][z2jh.SERVICE]


@pytest.mark.parametrize("source", ["configmap", "extraFiles"])
def test_the_room_settings_load(tmp_path: Any, source: str) -> None:
    if source == "configmap":
        text = _kind("ConfigMap")["data"]["room.toml"]
        mount = next(m for m in CONTAINER["volumeMounts"] if m["name"] == "room")["mountPath"]
        assert f"{mount}/room.toml" in CONTAINER["args"]
    else:
        text = HUB_MANAGED["hub"]["extraFiles"]["runway-gateway-room"]["stringData"]
    path = tmp_path / "room.toml"
    path.write_text(text)
    room = RoomConfig.load(path)
    assert room.defaults.jobs == 5 and not room.gallery_room


def test_the_readme_commands_use_these_files() -> None:
    readme = (z2jh.ROOT / "README.md").read_text()
    section = readme.split("## Running a workshop on Kubernetes", 1)[1].split("\n## ", 1)[0]
    lines = section.replace("\\\n", " ").splitlines()  # continued lines joined
    commands = [shlex.split(line, comments=True)
                for line in lines if line.startswith(("helm ", "kubectl ", "docker "))]
    files = {word for command in commands for word in command if word.startswith("docs/z2jh/")}
    assert files >= {"docs/z2jh/values.yaml", "docs/z2jh/gateway.yaml",
                     "docs/z2jh/values-hub-managed.yaml"}
    assert all((z2jh.ROOT / name).exists() for name in files)


def _mappings(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping in a YAML document with its path, depth first."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _mappings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _mappings(value, f"{path}[{index}]")
