"""``gateway serve`` starts truthfully: the port, the key and the upstream are checked before
anything says it is ready; the banner gives the addresses a room can use; a participant told
that the upstream failed is told the truth about their job."""

from __future__ import annotations

import argparse
import socket
import time

import pytest

from runway_widget.cli.commands import main
from runway_widget.demo import DemoServer
from runway_widget.errors import ServerError, TaskFailedError
from runway_widget.gateway.addresses import network_addresses
from runway_widget.gateway.startup import check_upstream, register_serve
from runway_widget.gateway.upstream import Upstream
from tests.fake_clock import FakeClock
from tests.gateway_support import (
    free_port,
    gateway_on,
    participant,
    serve_process,
    stop_process,
    upstream_client,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(tmp_path))
    return tmp_path


def test_a_taken_port_is_one_line_and_nothing_says_serving(home, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["gateway", "serve", "--port", str(port), "--upstream", "demo"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: cannot serve on 127.0.0.1:{port}: the port is taken "
        "(choose another --port, or 0 for a free one)\n"
    )


def test_no_key_is_one_line(home, capsys, monkeypatch):
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    assert main(["gateway", "serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1  # (another test's poller may still warn on this process's stderr)
    assert errors[0].startswith("error: the gateway needs the upstream key in APIFRAME_API_KEY")
    assert "Traceback" not in err and "ready" not in err


def test_a_refused_key_stops_the_start_and_frees_the_port(home, capsys, monkeypatch):
    monkeypatch.setenv("APIFRAME_API_KEY", "not-the-demo-key")
    port = free_port()
    with DemoServer() as demo:
        code = main(["gateway", "serve", "--port", str(port), "--upstream", demo.base_url])
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: the upstream {demo.base_url} refused APIFRAME_API_KEY" in err
    assert "not serving" in err and "ready" not in err
    assert "not-the-demo-key" not in err
    with socket.socket() as again:  # the port was given back
        again.bind(("127.0.0.1", port))


def test_the_banner_gives_network_addresses_the_board_line_and_the_pages(home, tmp_path):
    assert main(["gateway", "join", "add", "ROOM-42", "--seats", "30", "--jobs", "3"]) == 0
    port, dead = free_port(), free_port()
    log = tmp_path / "serve.log"
    process = serve_process(
        port, "--host", "0.0.0.0", "--upstream", f"http://127.0.0.1:{dead}",
        env={"APIFRAME_API_KEY": "some-key", "RUNWAY_WIDGET_HOME": str(home)}, log=log,
    )
    try:
        text = log.read_text()
        lines = text.splitlines()
        warning = next(line for line in lines if line.startswith("WARNING"))
        assert f"the upstream http://127.0.0.1:{dead} does not answer" in warning
        assert "nothing is charged" in warning
        ready = lines.index(next(line for line in lines if line.startswith("Gateway ready")))
        assert lines.index(warning) < ready
        board = [line.strip() for line in lines[ready:]]
        addresses = network_addresses()
        url = f"http://{addresses[0]}:{port}" if addresses else f"http://127.0.0.1:{port}"
        assert f"participants use  {url}" in board[1]
        if addresses:
            assert "127.0.0.1" not in board[1]
        assert f"on the board      runway-widget join {url} ROOM-42  (30 of 30 seats free)" in board
        assert f"projector         {url}/gallery?token=ADMIN-TOKEN" in board
        assert f"admin             {url}/admin?token=ADMIN-TOKEN" in board
        assert any("no admin token yet" in line for line in board)
        assert "Traceback" not in text and "some-key" not in text
    finally:
        stop_process(process)


def test_serve_help_describes_every_flag():
    parser = argparse.ArgumentParser()
    register_serve(parser.add_subparsers())
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    described = {
        action.option_strings[-1]: action.help
        for action in serve._actions
        if action.option_strings and action.option_strings[-1] != "--help"
    }
    assert {"--host", "--port", "--upstream", "--db", "--public-url"} <= set(described)
    assert all(described.values()), [flag for flag, text in described.items() if not text]
    assert "0.0.0.0" in described["--host"] and "0: any free" in described["--port"]


def _upstream_at(url: str, key: str, folder) -> Upstream:
    return Upstream(upstream_client(url, key, folder, max_retries=0))


@pytest.mark.parametrize("case", ["refused key", "unreachable"])
def test_without_the_queue_a_job_the_upstream_never_took_is_told_so_and_costs_nothing(
    tmp_path, case
):
    with DemoServer() as demo:
        if case == "refused key":
            upstream = _upstream_at(demo.base_url, "not-the-demo-key", tmp_path)
        else:
            upstream = _upstream_at(f"http://127.0.0.1:{free_port()}", demo.api_key, tmp_path)
        with gateway_on(upstream, tmp_path, queue=False) as gateway:
            # the participant's client retries the 503 after its Retry-After, on a fake clock
            alice = participant(gateway, tmp_path, "alice", jobs=2, clock=FakeClock())
            with pytest.raises(ServerError) as raised:
                alice.imagine(prompt="a red kite")
            message = str(raised.value)
            assert message.endswith("; nothing was submitted and your quota is untouched")
            assert "may or may not" not in message and "history" not in message
            assert "the server failed" not in message and "HTTP" not in message
            if case == "refused key":
                assert message.startswith("the provider refused the workshop's key: tell the "
                                          "instructor")
                assert raised.value.refusal == "upstream_key_refused"
            else:
                assert message.startswith("the workshop gateway cannot reach its provider right "
                                          "now: try again in a moment")
                assert raised.value.refusal == "upstream_unavailable"
            assert alice.account()["jobs_left"] == 2
            [row] = gateway.report()
            assert row["refused"] >= 1 and row["unknown"] == 0


def test_with_the_queue_a_refused_key_ends_the_job_and_an_unreachable_upstream_keeps_it(
    tmp_path,
):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    with DemoServer() as demo:
        refused = _upstream_at(demo.base_url, "not-the-demo-key", tmp_path / "a")
        with gateway_on(refused, tmp_path / "a") as gateway:
            alice = participant(gateway, tmp_path, "alice", jobs=2)
            task_id = alice.imagine(prompt="a red kite")
            with pytest.raises(TaskFailedError) as failed:
                alice.wait(task_id, timeout=20, poll_interval=0.1)
            message = failed.value.task.message or ""
            assert "the gateway's upstream key was refused: tell the instructor" in message
            assert "nothing was submitted and your quota is untouched" in message
            assert "may or may not" not in message
            assert alice.account()["jobs_left"] == 2
        unreachable = _upstream_at(f"http://127.0.0.1:{free_port()}", demo.api_key, tmp_path)
        with gateway_on(unreachable, tmp_path / "b") as gateway:
            bo = participant(gateway, tmp_path, "bo", jobs=2)
            task_id = bo.imagine(prompt="a red kite")
            queue = gateway.workshop.submissions.queue
            deadline = time.monotonic() + 20
            while not queue.status()["paused_for"]:  # tried: no connection, everyone waits
                assert time.monotonic() < deadline, "the queue never tried the upstream"
                time.sleep(0.02)
            task = bo.fetch(task_id)
            assert (task.status, task.queue_position) == ("staged", 1)  # it waits its turn
            [row] = gateway.report()
            assert (row["queued"], row["refused"], row["unknown"]) == (1, 0, 0)


def test_an_upstream_that_accepts_the_key_is_said_with_the_credits_left(tmp_path):
    with DemoServer() as demo:
        upstream = _upstream_at(demo.base_url, demo.api_key, tmp_path)
        try:
            check = check_upstream(upstream)
        finally:
            upstream.close()
    assert check.ok and not check.fatal
    assert check.text.startswith(f"{demo.base_url} accepts the key; credits left on the key: ")
