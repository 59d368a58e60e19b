"""Two gateway replicas are one gateway, in the cluster's topology on one machine.

Each part has a loopback address of its own: the chart's hub and its proxy on one, users'
servers on another, the two replicas of ``docs/z2jh/gateway.yaml``'s Deployment (its own
arguments, environment and volumes: the clip claim is one folder) on two more, and a
round-robin balancer standing in for their Service on a fifth; one PostgreSQL, and a demo
upstream standing in for APIFRAME. Kernels are given only the proxy's URL.

alice generates two clips with the panel in her kernel, bob three with the client at once
(his concurrency quota is two). While the jobs run, the replica following the most of them
is killed with SIGKILL, then restarted, as Kubernetes restarts a pod. Then: nothing is
lost or sent twice, the quotas are exact, every clip plays with Range from either replica,
and the room's gallery, signed in through the hub's OAuth, shows them all whichever
replica answers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import hub_harness
import pytest
import requests
import z2jh_support as z2jh
from sqlalchemy import select

from runway_widget.demo import DemoServer
from runway_widget.gateway.db.database import jobs, open_engine
from runway_widget.gateway.db.roster import Roster
from tests.gateway_support import needs_postgres, postgres_server

pytestmark = [pytest.mark.hub, needs_postgres, pytest.mark.timeout(420)]

HUB = "127.0.0.10"  # the hub pod and the proxy pod
SERVERS = "127.0.0.11"  # users' pods
REPLICAS = ["127.0.0.12", "127.0.0.13"]
SERVICE = "127.0.0.14"
JOB_SECONDS = 12.0  # long enough to kill a replica while the jobs run
ADMIN = "instructor"

PANEL_SUBMITS = """
import json
from runway_widget import RunwayPanel

panel = RunwayPanel()
jobs = []
for prompt in ("a lighthouse in fog", "a paper boat on a pond"):
    panel.form.prompt.value = prompt
    jobs.append(panel.submit())
print(json.dumps({"task_ids": [job.task_id if job else panel.banner for job in jobs],
                  "base_url": panel.client.base_url}))
"""

PANEL_PLAYS = """
import json, time

finished = [panel.tracker.wait(job.task_id, timeout=180) for job in jobs]
for job in jobs:  # a finished job opens its player and closes the one before: open both
    panel.play(job)
deadline = time.monotonic() + 60
while not all(panel.view(job).video for job in jobs) and time.monotonic() < deadline:
    time.sleep(0.2)
print(json.dumps([{"task_id": task.task_id, "status": task.status, "video_url": task.video_url,
                   "head": (panel.view(job).video or b"")[4:8].decode("latin-1")}
                  for job, task in zip(jobs, finished)]))
"""

CLIENT_SUBMITS = """
import json
from concurrent.futures import ThreadPoolExecutor
from runway_widget import ApiframeClient
from runway_widget.errors import QuotaExceededError

client = ApiframeClient()

def submit(n):
    try:
        return ["accepted", client.imagine(prompt=f"a kite over a dune, take {n}")]
    except QuotaExceededError as exc:
        return ["refused", exc.limit]

with ThreadPoolExecutor(3) as pool:
    outcomes = list(pool.map(submit, range(3)))
print(json.dumps(outcomes))
"""

CLIENT_PLAYS = """
import json, pathlib, tempfile

played = []
for outcome, task_id in outcomes:
    if outcome == "accepted":
        task = client.wait(task_id, timeout=180, poll_interval=0.25)
        saved = client.download(task, pathlib.Path(tempfile.mkdtemp()) / "clip.mp4")
        played.append({"task_id": task_id, "status": task.status, "video_url": task.video_url,
                       "head": saved.read_bytes()[4:8].decode("latin-1")})
print(json.dumps(played))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = hub_harness.missing_requirements()
    if missing:
        pytest.skip("a real JupyterHub needs " + "; ".join(missing))
    started = time.monotonic()
    with postgres_server() as database, DemoServer(job_seconds=JOB_SECONDS) as demo:
        hub = z2jh.ReplicatedChartHub(
            tmp_path_factory.mktemp("z2jh-replicas"),
            [z2jh.load_yaml(z2jh.DOCS / "values.yaml")],
            manifest=z2jh.load_documents(z2jh.DOCS / "gateway.yaml"),
            upstream_key=demo.api_key,
            database_url=database,
            replicas=REPLICAS,
            balancer=SERVICE,
            extra_args=["--upstream", demo.base_url, "--heartbeat", "1"],
            admins=[ADMIN],
            address=HUB,
            servers=SERVERS,
        )
        hub.start()
        engine = open_engine(database)
        try:
            hub.start_servers(["alice", "bob"])
            print(f"chart hub, two replicas and two servers in {time.monotonic() - started:.1f} s")
            yield {"hub": hub, "demo": demo, "engine": engine, "started": started}
        finally:
            engine.dispose()
            hub.stop()


@pytest.fixture(scope="module")
def room(cluster: dict[str, Any]) -> dict[str, Any]:
    """The whole workshop: submissions, a replica killed mid-job and restarted, results."""
    hub: z2jh.ReplicatedChartHub = cluster["hub"]
    kernels = {user: hub.start_kernel(user) for user in ("alice", "bob")}
    panel = _run(hub, "alice", kernels["alice"], PANEL_SUBMITS)
    client = _run(hub, "bob", kernels["bob"], CLIENT_SUBMITS)
    task_ids = panel["task_ids"] + [task_id for kind, task_id in client if kind == "accepted"]

    replicas = [_ready(hub, index)["process"] for index in range(2)]
    before = _sent_upstream(cluster["engine"], task_ids)
    followed = [sum(row.follower == replica for row in before.values()) for replica in replicas]
    victim = followed.index(max(followed))
    hub.kill_replica(victim)
    killed_at = time.monotonic()
    played = _run(hub, "alice", kernels["alice"], PANEL_PLAYS)
    played += _run(hub, "bob", kernels["bob"], CLIENT_PLAYS)
    print(f"every clip played {time.monotonic() - killed_at:.1f} s after the kill")
    hub.start_replica(victim)
    return {
        "panel": panel,
        "client": client,
        "task_ids": task_ids,
        "before": before,
        "victim": replicas[victim],
        "survivor": replicas[1 - victim],
        "played": played,
        "after": _jobs(cluster["engine"], task_ids),
        "report": {row["name"]: row for row in Roster(cluster["engine"]).report()},
    }


def _run(hub: z2jh.ReplicatedChartHub, user: str, kernel: str, code: str) -> Any:
    result = hub.execute(user, kernel, code, timeout=240)
    assert result.error is None, (result.error, result.traceback, hub.log_tail())
    return result.last_json()


def _ready(hub: z2jh.ReplicatedChartHub, index: int) -> dict[str, Any]:
    return requests.get(hub.replica_url(index) + "ready", timeout=10).json()


def _sent_upstream(engine: Any, task_ids: list[str]) -> dict[str, Any]:
    """The jobs once the queue has sent them all: a replica killed while it sends a job
    leaves that job unknown, by design (it is never sent twice), so the kill waits for this."""
    deadline = time.monotonic() + 60
    while True:
        rows = _jobs(engine, task_ids)
        if all(row.state == "submitted" for row in rows.values()) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _jobs(engine: Any, task_ids: list[str]) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(jobs).where(jobs.c.task_id.in_(task_ids))).all()
    return {row.task_id: row for row in rows}


def test_kernels_know_only_the_proxy_and_the_submissions_fit_the_quotas(
    cluster: dict[str, Any], room: dict[str, Any]
) -> None:
    hub = cluster["hub"]
    assert room["panel"]["base_url"] == hub.gateway_url.rstrip("/")
    assert hub.gateway_url.startswith(f"http://{HUB}:")
    assert sorted(kind for kind, _ in room["client"]) == ["accepted", "accepted", "refused"]
    assert [limit for kind, limit in room["client"] if kind == "refused"] == ["concurrent"]
    assert len(room["task_ids"]) == 4
    assert all(row.state == "submitted" for row in room["before"].values())  # killed mid-job
    assert hub.balancer.served[hub.replica_urls[0]] and hub.balancer.served[hub.replica_urls[1]]


def test_nothing_is_lost_or_sent_twice_when_a_replica_dies_mid_job(
    cluster: dict[str, Any], room: dict[str, Any]
) -> None:
    orphaned = [t for t, row in room["before"].items() if row.follower == room["victim"]]
    assert orphaned
    assert {room["after"][t].follower for t in orphaned} == {room["survivor"]}
    assert all(row.state == "finished" and row.video_path for row in room["after"].values())
    assert cluster["demo"].stats.get("/runway-imagine") == 4
    assert sorted(clip["task_id"] for clip in room["played"]) == sorted(room["task_ids"])
    for clip in room["played"]:
        assert clip["status"] == "finished" and clip["head"] == "ftyp", clip
        assert clip["video_url"].startswith(cluster["hub"].gateway_url + "videos/")


def test_quotas_are_exact_after_the_kill(room: dict[str, Any]) -> None:
    for name in ("alice", "bob"):
        row = room["report"][name]
        assert (row["jobs_used"], row["running"], row["unknown"], row["finished"]) == (
            2, 0, 0, 2), row
        assert row["jobs_limit"] == 5  # the room's settings, from the manifest's ConfigMap


def test_every_clip_plays_with_range_from_either_replica(
    cluster: dict[str, Any], room: dict[str, Any]
) -> None:
    hub = cluster["hub"]
    for clip in room["played"]:
        path = clip["video_url"].split("/services/runway-gateway/", 1)[1]
        whole = requests.get(hub.replica_url(0) + path, timeout=10).content
        for index in range(2):
            part = requests.get(
                hub.replica_url(index) + path, headers={"Range": "bytes=100-1123"}, timeout=10
            )
            assert part.status_code == 206, (index, part.status_code)
            assert part.headers["Content-Range"] == f"bytes 100-1123/{len(whole)}"
            assert part.content == whole[100:1124]


def test_the_gallery_shows_every_clip_whichever_replica_answers(
    cluster: dict[str, Any], room: dict[str, Any]
) -> None:
    """Signed in through the hub's OAuth (its authorize, callback and cookie span both
    replicas: they sign with one secret), then the feed, round and round the replicas."""
    hub = cluster["hub"]
    browser = requests.Session()
    login = browser.get(f"{hub.public_url}/hub/login", timeout=10)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', login.text)
    assert xsrf, login.text[:500]
    browser.post(f"{hub.public_url}/hub/login",
                 data={"username": ADMIN, "password": "any", "_xsrf": xsrf[1]}, timeout=10)
    page = browser.get(hub.gateway_url + "gallery", timeout=20)
    assert page.status_code == 200, (page.status_code, hub.log_tail())
    keys = {room["after"][task_id].video_key for task_id in room["task_ids"]}
    for _ in range(4):
        feed = browser.get(hub.gateway_url + "gallery.json", timeout=10)
        assert feed.status_code == 200, feed.text
        assert feed.json()["scope"] == "room"
        shown = {clip["video_url"].split("/")[-1].removesuffix(".mp4")
                 for clip in feed.json()["clips"]}
        assert shown == keys
