# The chart's hub image with the workshop gateway, for docs/z2jh/values-hub-managed.yaml:
#   docker build -f docs/z2jh/hub.Dockerfile -t registry.example.org/k8s-hub-runway:4.4.0 .
# The gateway gets a virtualenv of its own, so the hub's JupyterHub stays the chart's.
FROM quay.io/jupyterhub/k8s-hub:4.4.0

USER root
COPY pyproject.toml README.md /tmp/runway_widget/
COPY runway_widget /tmp/runway_widget/runway_widget
RUN python3 -m venv /opt/runway-gateway \
 && /opt/runway-gateway/bin/pip install --no-cache-dir "/tmp/runway_widget[jupyterhub]" \
 && rm -rf /tmp/runway_widget

# the chart runs the hub as uid 1000 (hub.containerSecurityContext)
USER 1000
