"""What a workshop participant is told, in the CLI, the client's errors and the panel's banner:
each message points at the right fix (join, the address on the board, another name, the
instructor), from the gateway's refusal codes, in one line and never a library's traceback."""

from __future__ import annotations

import html

import pytest

from runway_widget.cli.commands import main
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.errors import AuthenticationError, ServerError
from runway_widget.gateway import Limits
from runway_widget.store import JobStore
from runway_widget.widget import RunwayPanel
from tests.api_server import TEST_API_KEY, ApiServer, Reply
from tests.gateway_support import demo_gateway, free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def laptop(tmp_path, monkeypatch):
    """A participant's machine: its own config (no token yet) and history, no key set."""
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNWAY_WIDGET_POLL_INTERVAL", "0.2")
    return tmp_path


def _said(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_no_key_and_no_workshop_points_to_join(laptop, capsys):
    assert main(["account"]) == 1
    err = _said(capsys)
    assert err.startswith("error: no API key, and no workshop joined: in a workshop, run the "
                          "line on the board first (`runway-widget join URL CODE`)")
    assert len(err.splitlines()) == 1
    with pytest.raises(AuthenticationError, match=r"in a workshop, join it first"):
        ApiframeClient(store=JobStore(laptop / "j.jsonl")).account()


def test_a_wrong_address_is_one_line_naming_the_fix(laptop, capsys):
    port = free_port()  # nothing listens there
    assert main(["join", f"http://127.0.0.1:{port}", "ROOM-42", "--name", "ana"]) == 1
    err = _said(capsys)
    assert err == (f"error: nothing answers at http://127.0.0.1:{port}: check the address and "
                   "the port on the board, and that the gateway is running\n")
    for typed in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert main(["join", typed, "ROOM-42", "--name", "ana"]) == 1
        assert _said(capsys) == (
            f"error: {typed!r} is not a gateway's address: it starts with http:// or https://, "
            f"as on the board (e.g. http://{typed})\n")


def test_a_wrong_code_a_closed_code_and_a_full_room_are_told_apart(laptop, capsys):
    with demo_gateway(laptop) as gateway:
        url = gateway.base_url
        gateway.roster.add_join_code("ROOM-42", seats=1, limits=Limits(jobs=1))
        assert main(["join", url, "ROOM-41", "--name", "ana"]) == 1
        assert _said(capsys) == (f"error: could not join the workshop at {url}: 'ROOM-41' is "
                                 "not a join code there: check it on the board (capitals do "
                                 "not matter)\n")
        db = str(gateway.engine.url)
        assert main(["gateway", "join", "close", "ROOM-42", "--db", db]) == 0
        capsys.readouterr()
        assert main(["join", url, "ROOM-42", "--name", "ana"]) == 1
        assert _said(capsys) == (f"error: could not join the workshop at {url}: the join code "
                                 "'ROOM-42' is closed: the instructor can reopen it\n")
        assert main(["gateway", "join", "reopen", "ROOM-42", "--db", db]) == 0
        assert main(["join", url, "room-42", "--name", "ana"]) == 0  # any case
        capsys.readouterr()
        (laptop / "config" / "gateway.json").unlink()  # another laptop
        assert main(["join", url, "ROOM-42", "--name", "bo"]) == 1
        assert _said(capsys) == (f"error: could not join the workshop at {url}: every seat of "
                                 "'ROOM-42' is taken: ask the instructor for more seats\n")
        assert main(["gateway", "join", "set", "ROOM-42", "--seats", "3", "--db", db]) == 0
        capsys.readouterr()
        assert main(["join", url, "ROOM-42", "--name", "Ana"]) == 1  # looks like ana
        assert _said(capsys).endswith("already in the room: choose another (--name NAME)\n")


def test_a_revoked_token_says_so_and_who_to_ask(laptop, capsys):
    with demo_gateway(laptop) as gateway:
        gateway.roster.add_join_code("ROOM-42", seats=3, limits=Limits(jobs=2))
        assert main(["join", gateway.base_url, "ROOM-42", "--name", "bob"]) == 0
        assert gateway.roster.revoke("bob")
        capsys.readouterr()
        assert main(["generate", "a kite", "--out", str(laptop / "kite.mp4")]) == 1
        said = _said(capsys)
        assert said == "error: the instructor revoked your workshop token: ask them to restore it\n"
        assert "API key" not in said and "APIFRAME_API_KEY" not in said
        panel = RunwayPanel(client=ApiframeClient(store=JobStore(laptop / "j.jsonl")))
        try:
            panel.form.prompt.value = "a kite"
            assert panel.submit() is None
            assert "Your workshop token was revoked" in panel.banner
            assert "ask them to restore it" in panel.banner and "API key" not in panel.banner
        finally:
            panel.close()


def test_account_through_a_gateway_says_what_is_left(laptop, capsys):
    with demo_gateway(laptop, job_seconds=0.3) as gateway:
        gateway.roster.add_join_code("ROOM-42", seats=3, limits=Limits(jobs=1))
        assert main(["join", gateway.base_url, "ROOM-42", "--name", "ana"]) == 0
        capsys.readouterr()
        assert main(["account"]) == 0
        assert capsys.readouterr().out == (
            f"participant: ana (workshop at {gateway.base_url})\n"
            "jobs left: 1\ncredits left: unlimited\njobs used: 0, running now: 0, queued: 0\n")
        assert main(["generate", "a boat", "--out", str(laptop / "boat.mp4")]) == 0
        capsys.readouterr()
        assert main(["generate", "a second boat"]) == 1
        assert _said(capsys).endswith(
            "quota reached: the 1 job of your quota is used (nothing was submitted); ask the "
            "instructor for more\n")
        assert main(["account"]) == 0
        out = capsys.readouterr()
        assert "jobs left: 0\n" in out.out and "None" not in out.out
        assert out.err == "your workshop quota is used up: ask the instructor for more\n"


@pytest.mark.parametrize(
    ("code", "status", "title", "says"),
    [
        ("upstream_unavailable", 503, "The workshop's provider cannot be reached: nothing was sent",
         "the workshop gateway cannot reach its provider right now: try again in a moment; "
         "nothing was submitted and your quota is untouched"),
        ("upstream_key_refused", 502, "The provider refused the workshop's key: nothing was sent",
         "the provider refused the workshop's key: tell the instructor; nothing was submitted "
         "and your quota is untouched"),
    ],
)
def test_a_provider_that_failed_took_nothing_and_says_so(tmp_path, code, status, title, says):
    with ApiServer() as api:
        refusal = {"errors": [{"msg": "the gateway's words", "code": code}]}
        api.script("/runway-imagine", *[Reply(status, json=refusal)] * 5)
        client = ApiframeClient(TEST_API_KEY, api.base_url, store=JobStore(tmp_path / "j.jsonl"),
                                max_retries=0)
        with pytest.raises(ServerError) as raised:
            client.imagine(prompt="a kite", generation_type="text2video")
        assert str(raised.value) == says and raised.value.refusal == code
        panel = RunwayPanel(client=client)
        try:
            panel.form.prompt.value = "a kite"
            assert panel.submit() is None
            assert html.escape(title) in panel.banner
            assert "The service had an error" not in panel.banner
            assert "the server failed" not in panel.banner and "may or may not" not in panel.banner
        finally:
            panel.close()
