"""The instructor's commands on a room: quotas, give back, revoke and restore, join codes,
class lists, clips, export, and the report's refusals by limit (through ``main``)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
import zipfile

import pytest

from runway_widget.cli.commands import main
from runway_widget.client.apiframe import ApiframeClient
from runway_widget.errors import KeyRefusedError, QuotaExceededError
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.ledger import Ledger, QuotaRefused
from runway_widget.gateway.db.roster import Limits, Roster, RosterError
from runway_widget.gateway.web.gallery import ClipFeed
from tests.gateway_support import (
    call,
    demo_gateway,
    needs_postgres,
    participant,
    postgres_server,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def own_config(tmp_path, monkeypatch):
    """`runway-widget join` stores a token: in this test's folder, for no other test to find."""
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'room.sqlite3'}"


def gw(db, *command):
    return main(["gateway", *command, "--db", db])


def test_an_existing_name_or_code_says_which_command_changes_it(db, capsys):
    assert gw(db, "token", "add", "alice", "--jobs", "2") == 0
    assert gw(db, "token", "add", "alice", "--jobs", "5") == 1
    err = capsys.readouterr().err
    assert "'alice' exists already" in err
    assert "`runway-widget gateway token set alice --jobs 5`" in err
    assert gw(db, "join", "add", "ROOM-42", "--seats", "30") == 0
    assert gw(db, "join", "add", "room-42", "--seats", "40") == 1  # any case: the same code
    assert "`runway-widget gateway join set room-42 --seats 40`" in capsys.readouterr().err


def test_token_set_give_back_revoke_and_restore(db, capsys):
    assert gw(db, "token", "add", "alice", "--jobs", "2", "--credits", "20") == 0
    capsys.readouterr()
    assert gw(db, "token", "set", "alice", "--jobs", "5", "--concurrent", "1") == 0
    assert "alice: jobs 0/5, credits 0/20, 1 at once" in capsys.readouterr().err
    assert gw(db, "token", "set", "alice", "--credits", "unlimited") == 0
    assert "credits 0/∞" in capsys.readouterr().err
    assert gw(db, "token", "set", "alice") == 1  # nothing to change
    assert gw(db, "token", "set", "ALICE", "--jobs", "1") == 1  # never a look-alike
    assert "names that look like it: 'alice'" in capsys.readouterr().err

    roster = Roster(open_engine(db))
    alice = roster.controls.find("alice")
    with roster.engine.begin() as conn:  # two jobs used, one of them never ran upstream
        conn.exec_driver_sql("UPDATE gateway_participants SET jobs_used=2, credits_used=10")
    assert gw(db, "token", "give-back", "alice", "--jobs", "1", "--credits", "5") == 0
    assert "alice: jobs 1/5, credits 5/∞" in capsys.readouterr().err
    assert gw(db, "token", "give-back", "alice", "--jobs", "9") == 0  # never below zero
    assert roster.controls.participant(alice)["jobs_used"] == 0
    assert gw(db, "token", "give-back", "alice") == 1

    assert gw(db, "token", "revoke", "alice") == 0
    assert roster.controls.participant(alice)["revoked"]
    assert gw(db, "token", "restore", "alice") == 0
    assert "restored alice" in capsys.readouterr().err
    assert not roster.controls.participant(alice)["revoked"]


def test_a_raised_quota_and_a_restore_act_on_the_next_request(tmp_path, capsys):
    with demo_gateway(tmp_path, job_seconds=0.2) as gateway:
        db = str(gateway.engine.url)
        alice = participant(gateway, tmp_path, "alice", jobs=1)
        alice.wait(alice.imagine(prompt="one"), timeout=30, poll_interval=0.2)
        for _ in range(3):
            with pytest.raises(QuotaExceededError):
                alice.imagine(prompt="more")
        assert gw(db, "token", "list") == 0
        assert "alice\tactive\tjobs 1/1" in capsys.readouterr().out
        assert gw(db, "report") == 0
        assert "alice: 1/1 jobs" in capsys.readouterr().out
        assert gw(db, "report", "--json") == 0
        [row] = json.loads(capsys.readouterr().out)
        assert (row["over_jobs"], row["over_credits"], row["over_concurrent"]) == (3, 0, 0)
        assert gw(db, "token", "set", "alice", "--jobs", "2") == 0
        alice.wait(alice.imagine(prompt="two"), timeout=30, poll_interval=0.2)
        assert gw(db, "token", "revoke", "alice") == 0
        with pytest.raises(KeyRefusedError, match="revoked"):
            alice.account()
        assert gw(db, "token", "restore", "alice") == 0
        assert alice.account()["jobs_left"] == 0


def test_join_codes_are_case_blind_kept_closable_and_rotatable(tmp_path, capsys):
    with demo_gateway(tmp_path) as gateway:
        db, url = str(gateway.engine.url), gateway.base_url
        assert gw(db, "join", "add", "ROOM-42", "--seats", "2", "--jobs", "1") == 0
        assert main(["join", url, "room-42", "--name", "ann"]) == 0  # any case
        assert gw(db, "join", "list") == 0
        assert capsys.readouterr().out.startswith("ROOM-42\topen\tseats 1/2\tjobs 1")

        assert gw(db, "join", "close", "room-42") == 0
        assert main(["join", url, "ROOM-42", "--name", "ben"]) == 1
        assert "the join code 'ROOM-42' is closed: the instructor can reopen it" in (
            capsys.readouterr().err)
        assert gw(db, "join", "reopen", "ROOM-42") == 0
        assert gw(db, "join", "set", "ROOM-42", "--seats", "3", "--jobs", "4") == 0
        err = capsys.readouterr().err
        assert "seats 1/3" in err and "to new seats and to 1 participant who" in err
        assert {r["name"]: r["jobs_limit"] for r in gateway.report()} == {"ann": 4}
        assert gw(db, "join", "set", "ROOM-42", "--seats", "0") == 2  # argparse: at least one

        assert gw(db, "join", "rotate", "ROOM-42", "--to", "LAB-7777") == 0
        assert capsys.readouterr().out.strip() == "LAB-7777"
        assert main(["join", url, "ROOM-42", "--name", "ben"]) == 1
        assert "'ROOM-42' is not a join code there" in capsys.readouterr().err
        assert main(["join", url, "lab-7777", "--name", "ben"]) == 0
        assert gw(db, "join", "rotate", "LAB-7777") == 0
        fresh = capsys.readouterr().out.strip()
        assert len(fresh) == 9 and fresh[4] == "-"
        assert gw(db, "join", "close", "NOPE-0000") == 1
        assert "no join code 'NOPE-0000'" in capsys.readouterr().err


def test_a_wrong_code_a_full_room_and_a_closed_code_are_told_apart(tmp_path):
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.codes.add("ROOM-42", 1, {"jobs": 1})
        replies = {}
        for case, code in (("joined", "ROOM-42"), ("full", "ROOM-42"), ("wrong", "ROOM-24")):
            replies[case] = call(gateway, "POST", "/join", json={"code": code, "name": case})
        gateway.roster.codes.set_closed(1, True)
        replies["closed"] = call(gateway, "POST", "/join", json={"code": "room-42", "name": "c"})
        assert replies.pop("joined").status_code == 200
        codes = {case: reply.json()["errors"][0] for case, reply in replies.items()}
        assert {case: error["code"] for case, error in codes.items()} == {
            "full": "room_full",
            "wrong": "join_code_unknown",
            "closed": "join_code_closed",
        }
        assert "the room is full" in codes["full"]["msg"]
        assert "unknown join code" in codes["wrong"]["msg"]


def test_a_revoked_participant_cannot_come_back_under_another_name(tmp_path, capsys):
    with demo_gateway(tmp_path) as gateway:
        db, url = str(gateway.engine.url), gateway.base_url
        assert gw(db, "join", "add", "ROOM-42", "--seats", "30", "--jobs", "3") == 0
        assert main(["join", url, "ROOM-42", "--name", "bob"]) == 0
        capsys.readouterr()
        assert gw(db, "token", "revoke", "bob") == 0
        err = capsys.readouterr().err
        assert "revoked bob" in err
        assert "ROOM-42, which has 29 free seats" in err
        assert "`runway-widget gateway join close ROOM-42`" in err

        # the same machine (it still holds bob's token), under any name
        for name in ("bob", "bobby"):
            assert main(["join", url, "ROOM-42", "--name", name]) == 1
            assert "this machine's workshop token was revoked" in capsys.readouterr().err
        # bob's name, or one like it, from anywhere
        for name in ("bob", "Bob", "b\u200bob"):
            reply = call(gateway, "POST", "/join", json={"code": "ROOM-42", "name": name})
            assert reply.status_code == 403
            assert reply.json()["errors"][0]["code"] == "token_revoked"
            assert "'bob' was revoked" in reply.json()["errors"][0]["msg"]
        assert [r["name"] for r in gateway.report()] == ["bob"]
        # closing the code shuts the last door: a new name from a new machine
        assert gw(db, "join", "close", "ROOM-42") == 0
        reply = call(gateway, "POST", "/join", json={"code": "ROOM-42", "name": "robert"})
        assert reply.json()["errors"][0]["code"] == "join_code_closed"
        # restored, bob's machine joins again (a new seat, numbered: the name is taken)
        assert gw(db, "token", "restore", "bob") == 0
        assert gw(db, "join", "reopen", "ROOM-42") == 0
        assert main(["join", url, "ROOM-42", "--name", "bob"]) == 0
        assert "as bob-2" in capsys.readouterr().err


def test_a_class_list_makes_personal_codes_that_fix_each_name(tmp_path, capsys):
    names = tmp_path / "names.csv"
    names.write_text("Name,email\nAna Lima,ana@example.org\nBo Chen,bo@example.org\n\n")
    with demo_gateway(tmp_path) as gateway:
        db, url = str(gateway.engine.url), gateway.base_url
        out = tmp_path / "codes.csv"
        assert gw(db, "roster", "import", str(names), "--jobs", "2", "--url", url,
                  "--out", str(out)) == 0
        assert "2 personal codes written" in capsys.readouterr().err
        rows = list(csv.DictReader(out.open()))
        assert [row["name"] for row in rows] == ["Ana Lima", "Bo Chen"]
        assert rows[0]["join"] == f"runway-widget join {url} {rows[0]['code']}"
        # before joining they are in the report, with nothing used
        assert {r["name"]: r["jobs_limit"] for r in gateway.report()} == {
            "Ana Lima": 2, "Bo Chen": 2}
        # the code joins as its name, whatever is typed, and only once
        assert main(["join", url, rows[0]["code"].lower(), "--name", "someone else"]) == 0
        assert "as Ana Lima" in capsys.readouterr().err
        assert ApiframeClient().account()["email"] == "Ana Lima"
        reply = call(gateway, "POST", "/join", json={"code": rows[0]["code"], "name": "x"})
        assert reply.status_code == 403
        assert "this personal code was used already" in reply.json()["errors"][0]["msg"]
        # a revoked student's code takes no seat
        assert gw(db, "token", "revoke", "Bo Chen") == 0
        reply = call(gateway, "POST", "/join", json={"code": rows[1]["code"], "name": "Bo"})
        assert reply.json()["errors"][0]["code"] == "token_revoked"
        # the codes are listed with their owner; a second import of a name is refused whole
        assert gw(db, "join", "list") == 0
        assert f"{rows[1]['code']}\topen\tseats 0/1" in capsys.readouterr().out
        again = tmp_path / "again.csv"
        again.write_text("Cy Diaz\nana lima\n")
        assert gw(db, "roster", "import", str(again)) == 1
        assert "nothing was added: 'ana lima' is (or looks like) 'Ana Lima', a participant" in (
            capsys.readouterr().err)
        assert "Cy Diaz" not in [r["name"] for r in gateway.report()]


def test_clips_are_listed_hidden_shown_again_and_exported_with_their_prompts(tmp_path, capsys):
    with demo_gateway(tmp_path, job_seconds=0.2) as gateway:
        db = str(gateway.engine.url)
        for name, prompt in (("ana", "a red kite"), ("=cmd|evil", "=HYPERLINK(1)")):
            client = participant(gateway, tmp_path, name)
            client.wait(client.imagine(prompt=prompt, duration=10), timeout=30, poll_interval=0.2)
        feed = ClipFeed(gateway.engine)
        deadline = time.monotonic() + 30
        while len(feed.listing()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert gw(db, "clip", "list") == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[1] == "1\tshown\tana\ta red kite"
        assert gw(db, "clip", "hide", "1") == 0
        assert [c["prompt"] for c in feed.clips(owner=None, since=None)["clips"]] == [
            "=HYPERLINK(1)"]
        assert gw(db, "clip", "hide", "99") == 1

        zipped = tmp_path / "out.zip"
        assert gw(db, "export", str(zipped)) == 0
        assert "1 clip written" in capsys.readouterr().err
        with zipfile.ZipFile(zipped) as archive:
            names = archive.namelist()
            manifest = list(csv.DictReader(io.StringIO(archive.read("clips.csv").decode())))
            assert archive.read(manifest[0]["file"])[4:8] == b"ftyp"
            listing = json.loads(archive.read("clips.json"))
        assert names == ["clips/00002-cmd-evil.mp4", "clips.csv", "clips.json"]
        assert manifest[0]["participant"] == "'=cmd|evil"  # a spreadsheet runs nothing
        assert manifest[0]["prompt"] == "'=HYPERLINK(1)" and manifest[0]["seconds"] == "10"
        assert listing[0]["participant"] == "=cmd|evil"

        assert gw(db, "clip", "unhide", "1") == 0
        assert gw(db, "export", str(zipped), "--include-hidden") == 0
        with zipfile.ZipFile(zipped) as archive:
            assert "clips/00001-ana.mp4" in archive.namelist()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def test_the_controls_on_either_database(tmp_path, kind):
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(postgres_server())
            if kind == "postgresql"
            else f"sqlite:///{tmp_path / 'either.sqlite3'}"
        )
        roster = Roster(open_engine(url))
        stack.callback(roster.engine.dispose)
        code = roster.codes.add("ROOM-42", 3, {"jobs": 1})
        token, name = roster.join("room-42", "ana")
        ana = roster.controls.find(name)
        assert roster.codes.change(code, seats=5, quota={"jobs": 2}) == 1
        assert roster.controls.set_quota(ana, {"credits": 9})["credits_limit"] == 9
        assert roster.codes.change(code, seats=None, quota={"jobs": 4}) == 0  # ana's own now
        assert roster.controls.participant(ana)["jobs_limit"] == 2
        ledger = Ledger(roster.engine)
        ledger.reserve(ana, 5, {"prompt": "one"})
        ledger.reserve(ana, 4, {"prompt": "two"})
        with pytest.raises(QuotaRefused):
            ledger.reserve(ana, 5, {"prompt": "three"})
        assert roster.report()[0]["over_jobs"] == 1
        assert roster.controls.give_back(ana, 1, 4)["jobs_used"] == 1
        roster.revoke(name)
        with pytest.raises(RosterError, match="was revoked"):
            roster.join("ROOM-42", "ANA")
        with pytest.raises(RosterError, match="machine's workshop token was revoked"):
            roster.join("ROOM-42", "someone", previous=token)
        assert roster.codes.set_closed(code, True)
        new = roster.codes.rotate(code)
        assert roster.codes.find(new.lower()) == code and roster.codes.find("ROOM-42") is None
        made = roster.add_roster(["Bo Chen"], Limits(jobs=1))
        assert roster.join(made[0][1], "anything")[1] == "Bo Chen"


def test_a_hub_users_own_quota_outlives_the_room_config(db):
    roster = Roster(open_engine(db))
    ann = roster.enroll("ann", Limits(jobs=3))
    ben = roster.enroll("ben", Limits(jobs=3))
    roster.controls.set_quota(ann, {"jobs": 10})
    assert roster.enroll("ann", Limits(jobs=5)) == ann  # the config changed, and says so again
    assert roster.enroll("ben", Limits(jobs=5)) == ben
    limits = {row["name"]: row["jobs_limit"] for row in roster.participants()}
    assert limits == {"ann": 10, "ben": 5}
