"""``runway-widget gateway …`` and ``join``, and the unchanged CLI and panel through a gateway."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import pytest

from runway_widget.cli.commands import main
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.client.credentials import config_path, load_joined, resolve
from runway_widget.errors import QuotaExceededError
from tests.gateway_support import demo_gateway

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.sqlite3'}"


def test_token_add_list_revoke_and_report(db, capsys):
    assert (
        main(["gateway", "token", "add", "ana", "--jobs", "3", "--credits", "30", "--db", db]) == 0
    )
    token = capsys.readouterr().out.strip()
    assert token.startswith("rwg_") and len(token) > 40
    assert main(["gateway", "token", "add", "ana", "--db", db]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["gateway", "token", "list", "--db", db]) == 0
    listed = capsys.readouterr().out
    assert "ana\tactive\tjobs 0/3\tcredits 0/30" in listed and token not in listed
    assert main(["gateway", "token", "revoke", "ana", "--db", db]) == 0
    assert main(["gateway", "token", "revoke", "nobody", "--db", db]) == 1
    capsys.readouterr()
    assert main(["gateway", "report", "--json", "--db", db]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["revoked"], row["jobs_limit"]) == ("ana", True, 3)
    assert main(["gateway", "report", "--csv", "--db", db]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["name"] == "ana" and rows[0]["unknown"] == "0"
    assert main(["gateway", "report", "--db", db]) == 0
    assert "ana: 0/3 jobs" in capsys.readouterr().out


def test_join_codes_and_the_participants_join_command(tmp_path, capsys):
    with demo_gateway(tmp_path) as gateway:
        db = str(gateway.engine.url)
        assert (
            main(["gateway", "join", "add", "lab-7", "--seats", "1", "--jobs", "2", "--db", db])
            == 0
        )
        assert main(["gateway", "join", "list", "--db", db]) == 0
        listed = capsys.readouterr().out
        assert "lab-7\topen\tseats 0/1\tjobs 2" in listed  # in full: the board shows it too
        assert main(["join", gateway.base_url, "lab-7", "--name", "bea"]) == 0
        err = capsys.readouterr().err
        joined = load_joined()
        assert joined is not None and joined["token"] not in err
        assert stat.S_IMODE(os.stat(config_path()).st_mode) == 0o600
        credentials = resolve()
        assert (credentials.source, credentials.base_url) == ("join", gateway.base_url)
        client = ApiframeClient()  # no key typed: the joined token
        assert client.account()["email"] == "bea"
        assert main(["join", gateway.base_url, "lab-7", "--name", "cy"]) == 1
        assert "every seat of 'lab-7' is taken: ask the instructor for more seats" in (
            capsys.readouterr().err)
        config_path().unlink()


def test_cli_generate_runs_through_the_gateway(tmp_path, monkeypatch, capsys):
    with demo_gateway(tmp_path, job_seconds=0.3) as gateway:
        token = gateway.add_participant("dan", jobs=1)
        monkeypatch.setenv("APIFRAME_API_KEY", token)
        monkeypatch.setenv("APIFRAME_BASE_URL", gateway.base_url)
        monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "0.2")
        out = tmp_path / "clip.mp4"
        assert main(["generate", "a harbour at dawn", "--out", str(out)]) == 0
        assert out.read_bytes()[4:8] == b"ftyp"
        assert main(["generate", "a second one"]) == 1
        assert "quota reached: the 1 job of your quota is used" in capsys.readouterr().err


def test_the_unchanged_panel_runs_through_the_gateway(tmp_path):
    from runway_widget.widget import RunwayPanel
    from tests.widget_helpers import finish

    with demo_gateway(tmp_path, job_seconds=0.3) as gateway:
        token = gateway.add_participant("eve", jobs=1)
        client = ApiframeClient(token, gateway.base_url)
        panel = RunwayPanel(client=client)
        try:
            panel.form.prompt.value = "a paper boat on a river"  # as a user types it
            job = panel.submit()
            task = panel.tracker.wait(job.task_id, timeout=60)
            assert task.video_url.startswith(gateway.base_url + "/videos/")
            # the gateway is on loopback, as the client's own backend: the kernel reads the
            # clip and the player gets its bytes (SPEC 4), whatever the browser can reach
            finish(panel, job)
            assert panel.submit() is None  # the quota is used up
            banner = panel.banner
            assert "quota reached: the 1 job of your quota is used" in banner
            assert token not in banner
            with pytest.raises(QuotaExceededError, match="quota reached"):
                client.imagine(prompt="more", generation_type="text2video")
        finally:
            panel.close()
