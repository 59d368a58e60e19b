"""Identities that cannot collide: one form per name, look-alikes refused, hub users exact.

Token and join names are typed by people, sometimes to pass for someone else; hub names
come from the hub and are taken exactly as they are. Databases from an earlier version
(names folded and cut, no keys) keep working.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from runway_widget.cli.commands import main
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.names import look_key, normal_name
from runway_widget.gateway.db.roster import Limits, Roster, RosterError
from runway_widget.models import RefusalCode
from tests.gateway_support import call, demo_gateway

CAROL_LOOK_ALIKES = [
    "Carol",  # another case
    "ＣＡＲＯＬ",  # full-width letters
    "car\u200bol",  # a zero-width space
    "car\u00adol",  # a soft hyphen
    "\u0441arol",  # a Cyrillic "с"
    "c\u0430rol",  # a Cyrillic "а"
    "ca\u202erol",  # a right-to-left override
]


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'gateway.sqlite3'}"


@pytest.fixture
def roster(db):
    engine = open_engine(db)
    yield Roster(engine)
    engine.dispose()


# -- one form, one key -------------------------------------------------------------------------


def test_a_name_has_one_form_and_is_never_cut():
    assert normal_name("  ＡＮＡ\u200b  lee\x1b[31m\u00ad ") == "ANA lee[31m"
    assert normal_name("x" * 64) == "x" * 64
    with pytest.raises(ValueError, match="at most 64"):
        normal_name("x" * 65)
    for blank in ("", "   ", "\u200b\u2060", "\x00\x07", "\u3164"):
        with pytest.raises(ValueError, match="needs a name"):
            normal_name(blank)


def test_look_alikes_share_a_key_and_different_names_do_not():
    assert {look_key(name) for name in CAROL_LOOK_ALIKES} == {look_key("carol")}
    others = ["carol-2", "caro", "José", "Jose", "山田ロン", "ann lee", "ann-lee"]
    assert len({look_key(name) for name in others}) == len(others)


# -- tokens (the instructor's command) ---------------------------------------------------------


def test_a_look_alike_token_name_is_refused_with_the_name_it_looks_like(roster):
    roster.add("carol", Limits())
    for name in CAROL_LOOK_ALIKES:
        with pytest.raises(RosterError, match="looks like 'carol'") as caught:
            roster.add(name, Limits())
        assert caught.value.code is RefusalCode.NAME_CONFUSABLE
    with pytest.raises(RosterError, match="exists already") as taken:
        roster.add("carol", Limits())
    assert taken.value.code is RefusalCode.NAME_TAKEN
    assert [p["name"] for p in roster.participants()] == ["carol"]


def test_revoke_takes_the_exact_name_and_never_a_look_alike(db, capsys):
    roster = Roster(open_engine(db))
    roster.add("carol", Limits())
    _old_row(roster, "carol\u200b")  # a look-alike an earlier version let in
    assert roster.revoke("ＣＡＲＯＬ") is None  # typed full-width: nobody is named that
    assert roster.revoke("Carol") is None
    assert main(["gateway", "token", "revoke", "Carol", "--db", db]) == 1
    err = capsys.readouterr().err
    assert "no participant named exactly 'Carol'" in err and "'carol'" in err
    assert "\u200b" not in err  # the look-alike's name is listed escaped
    assert roster.revoke("carol") == "carol"
    revoked = {p["name"]: p["revoked"] for p in roster.participants()}
    assert revoked == {"carol": True, "carol\u200b": False}


def test_revoke_accepts_the_same_text_in_another_composition(roster):
    roster.add("José", Limits())  # stored composed (NFC: é is one character)
    assert roster.revoke("Jose\u0301") == "José"  # typed as e + a combining accent


# -- join codes (participants choose) ----------------------------------------------------------


def _join(gateway, name):
    return call(gateway, "POST", "/join", json={"code": "room-42", "name": name})


def test_joining_under_a_look_alike_is_refused_and_the_same_name_numbered(roster):
    roster.add_join_code("room-42", 20, Limits(jobs=1))
    assert roster.join("room-42", "carol")[1] == "carol"
    assert roster.join("room-42", " carol ")[1] == "carol-2"  # the same login twice
    for name in CAROL_LOOK_ALIKES:
        with pytest.raises(RosterError, match="looks like 'carol'") as caught:
            roster.join("room-42", name)
        assert caught.value.code is RefusalCode.NAME_CONFUSABLE, name
    assert [p["name"] for p in roster.participants()] == ["carol", "carol-2"]


def test_join_refusals_carry_their_code(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.add_join_code("room-42", 20, Limits(jobs=1))
        first = _join(gateway, "carol")
        alike = _join(gateway, "car\u200bol")
        too_long = _join(gateway, "x" * 65)
    assert first.status_code == 200
    assert alike.status_code == 409
    [error] = alike.json()["errors"]
    assert error["code"] == "name_confusable"
    assert "looks like 'carol'" in error["msg"] and "\\u200b" in error["msg"]  # shown escaped
    assert too_long.status_code == 400
    assert too_long.json()["errors"][0]["code"] == "invalid_request"


def test_a_full_name_of_the_longest_kind_is_taken_not_cut(roster):
    roster.add_join_code("room-42", 5, Limits())
    long = "n" * 64
    assert roster.join("room-42", long)[1] == long
    with pytest.raises(RosterError) as caught:  # "-2" would not fit: never cut to make room
        roster.join("room-42", long)
    assert caught.value.code is RefusalCode.NAME_TAKEN


# -- hub users ---------------------------------------------------------------------------------


def test_hub_users_are_keyed_by_their_exact_name(roster):
    names = ["ann lee", "ann  lee", "ann\tlee", "x" * 64 + "a", "x" * 64 + "b", "y" * 300]
    ids = [roster.enroll(name, Limits(jobs=2)) for name in names]
    assert len(set(ids)) == len(names)
    assert [roster.enroll(name, Limits(jobs=2)) for name in names] == ids  # found again
    shown = {p["id"]: p["name"] for p in roster.participants()}
    assert shown[ids[0]] == "ann lee" and shown[ids[1]] == "ann  lee"
    assert shown[ids[5]].startswith("y" * 150 + "~")  # too long to show whole: tagged
    assert roster.revoke("y" * 300) == shown[ids[5]]  # by the exact hub name
    assert roster.enroll("y" * 300, Limits()) is None


def test_a_hub_user_never_takes_over_a_token_holder_of_the_same_name(roster):
    roster.add("projector", Limits(), admin=True)
    hub_id = roster.enroll("projector", Limits(jobs=1))
    rows = {p["id"]: p for p in roster.participants()}
    assert hub_id is not None and len(rows) == 2
    assert rows[hub_id]["name"].startswith("projector~") and not rows[hub_id]["admin"]


# -- a database from an earlier version --------------------------------------------------------


def _old_row(roster: Roster, name: str, *, token_hash: str | None = "0" * 64) -> int:
    """A participant as an earlier version stored it: no look-alike key, no hub key."""
    with roster.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO gateway_participants (name, token_hash, jobs_used, credits_used,"
                " running, revoked, admin, created_at) VALUES (:name, :token, 1, 5, 0,"
                " false, false, :now)"
            ),
            {"name": name, "token": token_hash, "now": time.time()},
        )
        return int(conn.execute(text("SELECT max(id) FROM gateway_participants")).scalar_one())


def _old_database(db: str) -> None:
    """The participants table as an earlier version made it (no key columns)."""
    engine = open_engine(db)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX gateway_participants_by_look"))
        conn.execute(text("DROP INDEX gateway_participants_by_hub_name"))
        conn.execute(text("ALTER TABLE gateway_participants DROP COLUMN name_key"))
        conn.execute(text("ALTER TABLE gateway_participants DROP COLUMN hub_key"))
    engine.dispose()


def test_an_earlier_database_keeps_its_people_apart_and_gains_its_keys(db):
    _old_database(db)
    engine = open_engine(db)  # the columns and their unique indexes come back
    roster = Roster(engine)
    alice = _old_row(roster, "alice", token_hash=None)  # a hub user, enrolled before
    folded = _old_row(roster, "ann lee", token_hash=None)  # maybe "ann  lee", folded
    dora = _old_row(roster, "dora")  # a token holder
    engine.dispose()

    roster = Roster(open_engine(db))  # opening again keys the earlier token holders
    assert roster.enroll("alice", Limits(jobs=3)) == alice  # exactly her name: her row
    assert roster.enroll("ann  lee", Limits(jobs=3)) != folded  # never merged into it
    assert roster.enroll("ann lee", Limits(jobs=3)) == folded
    with pytest.raises(RosterError, match="looks like 'dora'"):
        roster.add("Dora", Limits())
    used = {p["id"]: p["jobs_used"] for p in roster.participants()}
    assert used[alice] == used[dora] == 1  # what they used before is still counted
    roster.engine.dispose()
