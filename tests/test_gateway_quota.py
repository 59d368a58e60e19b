"""Quota races: 50 submissions fired together against a 5-job quota -> exactly 5 accepted.

On SQLite (threads of one gateway) and on PostgreSQL (two gateway processes, one database).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests
from sqlalchemy import select

from runway_widget.gateway.db.database import jobs, open_engine
from runway_widget.gateway.db.roster import Limits, Roster
from runway_widget.gateway.upstream import Upstream
from tests.api_server import TEST_API_KEY, ApiServer
from tests.gateway_support import (
    free_port,
    gateway_on,
    needs_postgres,
    postgres_server,
    serve_processes,
    stop_process,
    upstream_client,
)

pytestmark = pytest.mark.timeout(180)

FIRED = 50
QUOTA = 5
BODY = {"prompt": "race", "generation_type": "text2video"}


def _fire(urls: list[str], token: str) -> Counter[int]:
    """FIRED submissions released together by a barrier, spread over ``urls``."""
    barrier = threading.Barrier(FIRED)
    statuses: list[int] = []

    def submit(url: str) -> None:
        with requests.Session() as session:
            session.get(url + "/health", timeout=10)  # connect before the barrier
            barrier.wait()
            reply = session.post(
                url + "/runway-imagine", json=BODY, headers={"Authorization": token}, timeout=60
            )
            statuses.append(reply.status_code)

    threads = [threading.Thread(target=submit, args=(urls[i % len(urls)],)) for i in range(FIRED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Counter(statuses)


def _sent(api: ApiServer, db: str) -> int:
    """Submissions the upstream received, once no job is left waiting or being sent in the
    ledger at ``db``: the queue has nothing more to send."""
    engine = open_engine(db)
    waiting = select(jobs.c.id).where(jobs.c.state.in_(["queued", "sending"])).limit(1)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(waiting).first() is None:
                    return api.count("/runway-imagine")
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError("the queue still held jobs after 20 s")


def test_fifty_at_once_against_five_jobs_on_sqlite(tmp_path):
    with ApiServer() as api:
        client = upstream_client(api.base_url, TEST_API_KEY, tmp_path)
        with gateway_on(Upstream(client), tmp_path, rate=1000, burst=1000) as gateway:
            token = gateway.add_participant("racer", jobs=QUOTA)
            statuses = _fire([gateway.base_url], token)
            sent = _sent(api, str(gateway.engine.url))
            report = gateway.report()[0]
        assert statuses == Counter({200: QUOTA, 403: FIRED - QUOTA})
        assert sent == QUOTA
        assert report["jobs_used"] == QUOTA


@needs_postgres
def test_fifty_at_once_against_five_jobs_on_two_processes_sharing_postgresql(tmp_path):
    with postgres_server() as url, ApiServer() as api:
        roster = Roster(open_engine(url))
        token = roster.add("racer", Limits(jobs=QUOTA, credits=QUOTA * 5))
        roster.engine.dispose()
        ports = [free_port(), free_port()]
        env = {"APIFRAME_API_KEY": TEST_API_KEY, "RUNWAY_WIDGET_HOME": str(tmp_path)}
        args = ("--db", url, "--upstream", api.base_url, "--rate", "1000")
        logs = [tmp_path / f"gateway-{port}.log" for port in ports]
        processes = serve_processes(ports, *args, env=env, logs=logs)
        try:
            statuses = _fire([f"http://127.0.0.1:{p}" for p in ports], token)
            sent = _sent(api, url)
        finally:
            for process in processes:
                stop_process(process)
        assert statuses == Counter({200: QUOTA, 403: FIRED - QUOTA})
        assert sent == QUOTA
        report = Roster(open_engine(url)).report()[0]
        assert (report["jobs_used"], report["credits_used"]) == (QUOTA, QUOTA * 5)
        logs = "".join(p.read_text() for p in tmp_path.glob("gateway-*.log"))
        assert token not in logs and TEST_API_KEY not in logs
