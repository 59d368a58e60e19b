"""What a cluster asks of a replica: probes, Prometheus metrics, and JSON logs.

``/health`` answers while the process does; ``/ready`` only while the database does (a
PostgreSQL database that stops taking connections, then takes them again). ``/metrics``
is the admins' on the gateway's port, and anyone's on ``--metrics-port``. ``serve
--log-format json`` writes one JSON object a line, with no token in any of them.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest
import requests

from runway_widget.demo import DEMO_API_KEY
from tests.gateway_support import (
    demo_gateway,
    free_port,
    needs_postgres,
    postgres_server,
    serve_process,
    stop_process,
)

pytestmark = pytest.mark.timeout(120)


def test_metrics_are_for_admins_on_the_gateways_port_and_open_on_their_own(tmp_path):
    metrics_port = free_port()
    with demo_gateway(tmp_path, metrics_port=metrics_port) as gateway:
        admin = gateway.add_participant("teacher", admin=True)
        alice = gateway.add_participant("alice")
        url = gateway.base_url + "/metrics"
        anonymous = requests.get(url, timeout=10)
        participant = requests.get(url, headers={"Authorization": alice}, timeout=10)
        requests.post(gateway.base_url + "/fetch", json={"task_id": "nope"},
                      headers={"Authorization": alice}, timeout=10)
        by_admin = requests.get(url, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        elsewhere = requests.get(f"http://127.0.0.1:{metrics_port}/account", timeout=10)
    assert anonymous.status_code == 401 and participant.status_code == 403
    assert by_admin.status_code == 200 and scraped.status_code == 200
    assert by_admin.headers["Content-Type"].startswith("text/plain; version=")
    for text in (by_admin.text, scraped.text):
        assert 'runway_gateway_refusals_total{code="not_found"} 1.0' in text
        assert 'runway_gateway_refusals_total{code="unauthorized"} 1.0' in text
        assert 'runway_gateway_lane_waiting{lane="upstream"} 0.0' in text
        assert "runway_gateway_poll_lag_seconds" in text
        assert alice not in text and admin not in text
    assert elsewhere.status_code == 404


@needs_postgres
def test_ready_follows_the_database_and_health_does_not(tmp_path):
    with postgres_server() as server:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("CREATE DATABASE probed")
        url = server.rsplit("/", 1)[0] + "/probed"
        with demo_gateway(tmp_path, db=url) as gateway, psycopg.connect(
            server, autocommit=True
        ) as admin:
            before = _probes(gateway.base_url)
            named = requests.get(gateway.base_url + "/ready", timeout=10).json()["process"]
            assert named == gateway.workshop.followers.id
            admin.execute("ALTER DATABASE probed ALLOW_CONNECTIONS false")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'probed'"
            )
            during = _until(gateway.base_url, ready=503)
            admin.execute("ALTER DATABASE probed ALLOW_CONNECTIONS true")
            after = _until(gateway.base_url, ready=200)
    assert before == (200, 200)
    assert during == (200, 503)
    assert after == (200, 200)


def _probes(base: str) -> tuple[int, int]:
    health = requests.get(base + "/health", timeout=10).status_code
    ready = requests.get(base + "/ready", timeout=10)
    assert ready.json()["ok"] is (ready.status_code == 200)
    return health, ready.status_code


def _until(base: str, *, ready: int) -> tuple[int, int]:
    """The probes once ``/ready`` answers ``ready`` (its answer is cached for a second)."""
    deadline = time.monotonic() + 10
    while True:
        probes = _probes(base)
        if probes[1] == ready or time.monotonic() > deadline:
            return probes
        time.sleep(0.2)


def test_json_logs_one_object_a_line_without_tokens(tmp_path):
    port = free_port()
    log = tmp_path / "gateway.log"
    env = {
        "APIFRAME_API_KEY": DEMO_API_KEY,
        "RUNWAY_WIDGET_HOME": str(tmp_path),
        # `python -m runway_widget.cli.commands` (how tests start it) warns once, in text
        "PYTHONWARNINGS": "ignore::RuntimeWarning:runpy",
    }
    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    secret = "tok-never-in-a-log-0123456789"
    process = serve_process(
        port, "--db", db, "--upstream", "demo", "--log-format", "json", env=env, log=log
    )
    try:
        base = f"http://127.0.0.1:{port}"
        requests.get(base + "/gallery", params={"token": secret}, timeout=10)
        requests.get(base + "/gallery?%74oken=" + secret, timeout=10)
        requests.get(base + "/account", headers={"Authorization": secret}, timeout=10)
    finally:
        stop_process(process)
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert secret not in text
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    served = [r["request"] for r in records if r["logger"] == "runway_widget.gateway.access"]
    assert {"method": "GET", "path": "/account", "status": 401} in [
        {key: entry[key] for key in ("method", "path", "status")} for entry in served
    ]
    assert any(r["message"].startswith("Gateway ready on port") for r in records)
