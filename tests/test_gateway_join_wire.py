"""``runway-widget join`` on the wire: one bounded call through the package's transport.

A gateway that trickles its reply, or never answers, ends the join by its overall deadline
(real sockets on 127.0.0.1: how the socket behaves is the point); a reply too large or a
redirect is refused; every failure is a `JoinError` carrying the gateway's refusal code.
"""

from __future__ import annotations

import json

import pytest
from hostile_peers import BlackHole
from hostile_server import HostileServer, elapsed, flood, json_reply, send, trickle

from runway_widget._http.transport import MockTransport, Request, Response
from runway_widget.client.credentials import JoinError, join_gateway, load_joined
from runway_widget.errors import ApiframeError

pytestmark = pytest.mark.timeout(60)

SEAT = {"token": "rwg_seat", "name": "ana"}


@pytest.fixture(autouse=True)
def laptop(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


def test_a_gateway_that_trickles_its_reply_ends_the_join_by_its_deadline():
    with HostileServer() as slow:
        slow.route("/join", trickle(json_reply(SEAT), every=0.2))  # each read well in time
        took, outcome = elapsed(lambda: join_gateway(slow.base_url, "ROOM-42", "ana",
                                                     deadline=1.0))
    assert isinstance(outcome, JoinError), outcome
    assert str(outcome) == (f"no complete answer from {slow.base_url} within 1 s: check the "
                            "address with the instructor")
    assert took < 4.0  # the reply alone would take over 10 s
    assert load_joined() is None


def test_a_gateway_that_never_answers_ends_the_join_by_its_deadline():
    with BlackHole() as hole:
        base = hole.url.removesuffix("/hook")
        took, outcome = elapsed(lambda: join_gateway(base, "ROOM-42", "ana", deadline=0.5))
    assert isinstance(outcome, JoinError) and "no complete answer" in str(outcome), outcome
    assert took < 3.0


def test_an_endless_reply_and_a_redirect_are_refused():
    with HostileServer() as bad:
        bad.route("/join", flood(b'{"token": "'))
        with pytest.raises(JoinError, match="larger than a gateway's"):
            join_gateway(bad.base_url, "ROOM-42", "ana", deadline=10.0)
        bad.route("/join", send(json_reply(SEAT, 307, Location=bad.base_url + "/elsewhere")))
        bad.route("/elsewhere", send(json_reply(SEAT)))
        with pytest.raises(JoinError, match=r"HTTP 307, not a gateway\?"):
            join_gateway(bad.base_url, "ROOM-42", "ana")
        assert bad.count("/elsewhere") == 0
    assert load_joined() is None


def test_a_refusal_is_a_join_error_with_its_code_and_a_seat_is_stored():
    sent: list[Request] = []

    def gateway(request: Request) -> Response:
        sent.append(request)
        if request.json()["code"] != "ROOM-42":
            return Response(403, json={"errors": [{"msg": "full", "code": "room_full"}]})
        return Response(200, json=SEAT)

    wire = MockTransport(gateway)
    with pytest.raises(JoinError) as refused:
        join_gateway("http://gateway.test/", "ROOM-41", "ana", transport=wire)
    error = refused.value
    assert isinstance(error, ApiframeError) and not isinstance(error, PermissionError)
    assert (error.refusal, error.status_code) == ("room_full", 403)
    assert str(error) == "could not join the workshop at http://gateway.test: full"
    joined = join_gateway("http://gateway.test", "ROOM-42", "ana", transport=wire)
    assert joined["url"] == "http://gateway.test" and "rwg_seat" not in json.dumps(joined)
    assert load_joined() == {"url": "http://gateway.test", "token": "rwg_seat", "name": "ana"}
    assert [r.path for r in sent] == ["/join", "/join"] and sent[0].method == "POST"
    join_gateway("http://gateway.test", "ROOM-42", "ana", transport=wire)
    assert sent[-1].json()["previous"] == "rwg_seat"  # the machine's earlier token goes along
