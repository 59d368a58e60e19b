# The Runway workshop gateway on a JupyterHub: add these lines to your jupyterhub_config.py.
#
# Participants then type nothing: in their notebooks `ApiframeClient()` and `RunwayPanel()`
# reach the gateway with their own server's hub token, and each gets the quota set in
# the gateway's config file (see the README, "Running a workshop on JupyterHub").
#
# The real APIFRAME key stays in the hub's own environment (APIFRAME_API_KEY, e.g. in its
# systemd unit), is handed to the gateway service only, and is never written here.
import os
import shutil

c = get_config()  # noqa: F821  (JupyterHub defines get_config when it loads this file)

RUNWAY_GATEWAY = "runway-gateway"  # the service's name: its URL is /services/runway-gateway/
RUNWAY_GATEWAY_PORT = int(os.environ.get("RUNWAY_GATEWAY_PORT", "8765"))
# Quotas per hub user and per group, and who sees the room's gallery (TOML or JSON).
RUNWAY_GATEWAY_CONFIG = os.environ.get(
    "RUNWAY_GATEWAY_CONFIG", "/etc/jupyterhub/runway-gateway.toml"
)
# "demo" rehearses the workshop on the embedded demo backend: no key, nothing paid.
RUNWAY_GATEWAY_UPSTREAM = os.environ.get("RUNWAY_GATEWAY_UPSTREAM", "https://api.apiframe.pro")

gateway_url = f"http://127.0.0.1:{RUNWAY_GATEWAY_PORT}"
gateway_environment = {
    name: os.environ[name]
    for name in ("APIFRAME_API_KEY", "RUNWAY_WIDGET_HOME")
    if name in os.environ
}
c.JupyterHub.services.append({
    "name": RUNWAY_GATEWAY,
    "url": gateway_url,
    "command": [
        shutil.which("runway-widget") or "runway-widget",
        "gateway", "serve", "--jupyterhub",
        "--host", "127.0.0.1", "--port", str(RUNWAY_GATEWAY_PORT),
        "--upstream", RUNWAY_GATEWAY_UPSTREAM,
        "--config", RUNWAY_GATEWAY_CONFIG,
    ],
    "environment": gateway_environment,
    "oauth_no_confirm": True,  # the gallery opens without an extra "authorize" page
})

# Every user may use the gateway, and their server's token (the kernel's
# JUPYTERHUB_API_TOKEN) carries that permission: a token gets the scopes of its
# server role that its owner also holds, so both grants are needed.
access_gateway = f"access:services!service={RUNWAY_GATEWAY}"
c.JupyterHub.extra_user_scopes.add(access_gateway)
c.JupyterHub.load_roles.append({
    "name": "server",
    "scopes": ["users:activity!user", "access:servers!server", access_gateway],
})

# Where kernels find the gateway: straight to the service, on the hub's machine.
c.Spawner.environment.update(
    {"RUNWAY_GATEWAY_URL": f"{gateway_url}/services/{RUNWAY_GATEWAY}/"}
)
