# The workshop gateway's image, for docs/z2jh/gateway.yaml:
#   docker build -t registry.example.org/runway-gateway:0.1.0 .
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --uid 10001 --user-group --create-home gateway

WORKDIR /src
COPY pyproject.toml README.md ./
COPY runway_widget ./runway_widget
RUN pip install ".[jupyterhub]" && rm -rf /src

USER 10001
WORKDIR /home/gateway
EXPOSE 8765
ENTRYPOINT ["runway-widget", "gateway", "serve"]
CMD ["--jupyterhub"]
