"""Hub users as participants: header forms, the service's scope, group quotas, admins, revocation.

The hub's side is a stand-in with `HubAuth`'s two members the gateway uses
(``user_for_token`` and ``access_scopes``), answering with the models a real hub returns
(the end-to-end test in test_gateway_hub.py runs the real one).
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("jupyterhub", reason="the hub mode needs jupyterhub (pip install jupyterhub)")

from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.roster import CredentialRevoked, Limits, Roster
from runway_widget.gateway.hub_auth import HubParticipants
from runway_widget.gateway.room_config import RoomConfig
from tests.fake_clock import FakeClock

SCOPE = "access:services!service=runway-gateway"
ROOM = RoomConfig.from_mapping(
    {
        "defaults": {"jobs": 3, "credits": 30, "concurrent": 1},
        "groups": {"advanced": {"jobs": 10}},
        "admins": {"groups": ["tas"]},
    }
)


def _model(name, *, scopes=(SCOPE,), groups=(), admin=False, kind="user"):
    return {"kind": kind, "name": name, "groups": list(groups), "admin": admin,
            "scopes": list(scopes)}


class StandInHub:
    """Answers like `HubAuth.user_for_token(token, sync=False)`: a user model or None."""

    access_scopes = frozenset({SCOPE})

    def __init__(self, models):
        self.models = models
        self.asked = []

    async def user_for_token(self, token, sync=True):
        self.asked.append(token)
        return self.models.get(token)



@pytest.fixture
def roster(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'gateway.sqlite3'}")
    yield Roster(engine)
    engine.dispose()


def _participants(roster, models, clock=None):
    return HubParticipants(StandInHub(models), roster, ROOM, clock=clock or FakeClock())


def _authenticate(participants, header):
    return asyncio.run(participants.authenticate(header))


def test_every_header_form_names_the_hub_user(roster):
    participants = _participants(roster, {"tok-alice": _model("alice")})
    seen = {_authenticate(participants, h) for h in ("tok-alice", "token tok-alice",
                                                     "Bearer tok-alice", "bearer  tok-alice")}
    assert len(seen) == 1
    alice = seen.pop()
    assert alice.name == "alice" and not alice.admin
    assert participants.hub_auth.asked[0] == "tok-alice"


@pytest.mark.parametrize(
    "header", [None, "", "token", "Bearer ", "tok-unknown", "x" * 600, "token a b c"]
)
def test_no_usable_token_is_nobody(roster, header):
    assert _authenticate(_participants(roster, {}), header) is None


def test_a_token_without_the_services_scope_or_not_a_user_is_refused(roster):
    participants = _participants(roster, {
        "narrow": _model("alice", scopes=["read:users:name!user=alice"]),
        "other-service": _model("alice", scopes=["access:services!service=grades"]),
        "service": _model("announcer", kind="service"),
        "all-services": _model("bob", scopes=["access:services"]),
    })
    assert _authenticate(participants, "narrow") is None
    assert _authenticate(participants, "other-service") is None
    assert _authenticate(participants, "service") is None
    assert _authenticate(participants, "all-services").name == "bob"  # the broader scope


def test_group_quotas_reach_the_roster_and_admins_come_from_hub_or_config(roster):
    participants = _participants(roster, {
        "a": _model("alice"),
        "b": _model("bob", groups=["advanced"]),
        "t": _model("teacher", admin=True),
        "s": _model("sam", groups=["tas"]),
    })
    alice, bob, teacher, sam = (_authenticate(participants, t) for t in "abts")
    rows = {row["name"]: row for row in roster.participants()}
    assert (rows["alice"]["jobs_limit"], rows["alice"]["credits_limit"]) == (3, 30)
    assert rows["bob"]["jobs_limit"] == 10
    assert [p.admin for p in (alice, bob, teacher, sam)] == [False, False, True, True]
    assert len({alice.id, bob.id, teacher.id, sam.id}) == 4


def test_a_new_group_changes_the_quota_and_a_revocation_acts_at_once(roster):
    clock = FakeClock()
    models = {"a": _model("alice")}
    participants = _participants(roster, models, clock)
    first = _authenticate(participants, "a")
    models["a"] = _model("alice", groups=["advanced"])  # the hub moved alice to a group
    again = _authenticate(participants, "a")
    assert again.id == first.id
    assert {r["name"]: r for r in roster.participants()}["alice"]["jobs_limit"] == 10

    assert roster.revoke("alice")
    with pytest.raises(CredentialRevoked):  # within the minute: still refused
        _authenticate(participants, "a")
    clock.advance(120)
    with pytest.raises(CredentialRevoked):  # and after it
        _authenticate(participants, "a")


def test_the_same_user_seen_by_two_gateway_processes_is_one_participant(roster):
    one = _participants(roster, {"a": _model("alice")})
    two = _participants(roster, {"b": _model("alice")})
    assert _authenticate(one, "a").id == _authenticate(two, "b").id
    assert Limits(3, 30, 1) == Limits(
        *(roster.participants()[0][k] for k in ("jobs_limit", "credits_limit", "concurrent_limit"))
    )
