"""A room on a public gateway (demo upstream): what participants send, and what it shows back.

Join codes cannot be brute-forced behind forged proxy headers, one address's idle sockets
leave everyone else served, names do not merge, malformed bodies are refused with 400,
``/upload`` needs a job left, and what the instructor reads (reports, lists, CSV, the serve
log) drives no terminal or spreadsheet and never holds a ``token=``.
"""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from hostile_peers import MALFORMED_BODIES, IdleSockets, guess_joins, post_malformed
from running_gateway import ACCEPTANCE, running_gateway

from runway_widget.demo.samples import sample_path

pytestmark = ACCEPTANCE

CODE = "ROOM-42"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what drives a terminal (not \t, \n)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = tmp_path_factory.mktemp("room")
    env = {"RUNWAY_WIDGET_DEMO_SECONDS": "1"}
    with running_gateway(folder, "--upstream", "demo", env=env, public=True) as gateway:
        done = gateway.cli("join", "add", CODE, "--seats", "40", "--jobs", "2")
        assert done.returncode == 0, done.stderr
        yield gateway


# -- one address against the others ------------------------------------------------------------


def test_forged_proxy_headers_buy_no_more_join_guesses(room):
    wrong = guess_joins(room.port, "127.0.0.4", [f"{n:04d}" for n in range(30)])
    assert wrong[:10] == [403] * 10  # checked: no such code
    assert set(wrong[10:]) == {429}  # refused unchecked, whatever address the headers claim
    assert guess_joins(room.port, "127.0.0.4", [CODE]) == [429]  # even the right code
    joined = room.call("POST", "/join", source="127.0.0.5", json={"code": CODE, "name": "dee"})
    assert joined.status_code == 200 and joined.json()["token"]
    assert "10.0.0." not in room.log_text()  # the access log names the real address


def test_an_address_holding_2010_idle_sockets_leaves_everyone_else_served(room):
    token = room.token("eve")
    with IdleSockets(room.port, "127.0.0.2", 2010) as flood:
        statuses = [
            room.call("GET", path, token, source="127.0.0.3").status_code
            for _ in range(20)
            for path in ("/health", "/account")
        ]
        deadline = time.monotonic() + 30
        while flood.closed() < 2010 - 500 and time.monotonic() < deadline:
            time.sleep(0.2)
        cut = flood.closed()
    assert statuses == [200] * 40  # none reset, none refused
    assert cut >= 2010 - 500  # the flood made room from its own connections


# -- identities --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def carol(room):
    return room.token("carol")


@pytest.mark.parametrize(
    "look_alike",
    ["carol\u200b", "ｃａｒｏｌ", "ca\u00adrol", "Carol", "\u0441arol"],  # Cyrillic с
)
def test_a_name_that_looks_like_another_never_joins_beside_it(room, carol, look_alike):
    joined = room.call("POST", "/join", source="127.0.0.6", json={"code": CODE, "name": look_alike})
    assert joined.status_code == 409, joined.text
    assert joined.json()["errors"][0]["code"] == "name_confusable"
    added = room.cli("token", "add", look_alike)
    assert added.returncode != 0 and not added.stdout


def test_revoking_takes_the_name_exactly_as_listed_never_a_look_alike(room):
    _join(room, "frank")
    wrong = room.cli("token", "revoke", "frank\u200b")
    assert wrong.returncode == 1 and "frank" in wrong.stderr
    listed = room.cli("token", "list").stdout
    assert re.search(r"^frank\tactive\t", listed, re.MULTILINE)
    assert room.cli("token", "revoke", "frank").returncode == 0
    assert re.search(r"^frank\trevoked\t", room.cli("token", "list").stdout, re.MULTILINE)


# -- what participants send --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/runway-imagine", "/fetch", "/fetch-many", "/join"])
def test_malformed_bodies_get_400_invalid_request(room, path):
    token = room.token(f"mal{path.strip('/')}")
    statuses = post_malformed(room.port, "127.0.0.7", path, token)
    assert statuses == [400] * len(MALFORMED_BODIES)
    assert "Traceback" not in room.log_text()


def test_upload_needs_a_job_left(room):
    image = sample_path("lighthouse.png").read_bytes()
    none_left = room.token("gus", "--jobs", "0")
    refused = room.call("POST", "/upload", none_left, files={"image": ("i.png", image)})
    reason = refused.json()["errors"][0]
    assert refused.status_code == 403
    assert (reason["code"], reason["limit"]) == ("quota_exceeded", "jobs")
    one_left = room.token("hal", "--jobs", "1")
    assert room.call("POST", "/upload", one_left, files={"image": ("i.png", image)}).ok


# -- what the instructor reads -----------------------------------------------------------------


def test_report_csv_cells_never_run_as_formulas(room):
    for name in ('=HYPERLINK("http://x")', "+1+2", "-3", "@SUM(A1)"):
        _join(room, name)
    admin = room.token("projector", "--admin")
    for text in (room.cli("report", "--csv").stdout, _admin_csv(room, admin)):
        names = [row["name"] for row in csv.DictReader(io.StringIO(text))]
        risky = [name for name in names if name[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert not risky, risky
        assert '\'=HYPERLINK("http://x")' in names


def _join(room, name: str) -> None:
    """``name`` takes a seat (or is refused: a name may be taken or malformed)."""
    room.call("POST", "/join", source="127.0.0.8", json={"code": CODE, "name": name})


def _admin_csv(room, admin: str) -> str:
    """The admin page's CSV, signed in with ``?token=`` once (then a cookie), as a browser."""
    import requests

    with requests.Session() as browser:
        reply = browser.get(f"{room.base_url}/admin/report.csv?token={admin}", timeout=15)
    assert reply.status_code == 200, reply.text
    return reply.text


def test_names_and_lists_drive_no_terminal(room):
    for name in ("\x1b[2J\x1b]0;pwned\x07ivy", "jo\x1b[31mred", "kim\r\n\x1b[1A"):
        _join(room, name)
    outputs = [room.cli(*command) for command in (("token", "list"), ("report",), ("join", "list"))]
    for done in outputs:
        assert not CONTROL.search(done.stdout.replace("\r\n", "\n")), done.args
        assert not CONTROL.search(done.stderr), done.args
    assert not CONTROL.search(room.log_text())


def test_no_token_ever_reaches_the_log(room):
    secret = "rwg_" + "S3cr3tT0k3n" * 3
    for uri in (
        f"/gallery?token={secret}",
        f"/admin?x=1&TOKEN={secret}",
        f"/gallery?token={secret}%ZZ",  # a malformed escape: tornado refuses the request
        f"/gallery?%74oken={secret}",
    ):
        room.call("GET", uri)
    room.call("POST", "/fetch", secret, json={"task_id": "t"})
    assert secret not in room.log_text()
