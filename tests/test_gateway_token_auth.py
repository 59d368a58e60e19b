"""Token authentication: header forms, and how soon a revocation bites (on a fake clock)."""

from __future__ import annotations

import asyncio

from runway_widget.gateway.auth import TokenAuth, bare_token
from runway_widget.gateway.database import open_engine
from runway_widget.gateway.roster import Limits, Roster


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_header_forms():
    assert bare_token("rwg_x") == "rwg_x"
    assert bare_token("Bearer rwg_x") == bare_token("token rwg_x") == "rwg_x"
    assert bare_token(None) is None and bare_token("") is None
    assert bare_token("Basic a b") is None and bare_token("x" * 600) is None


def test_revocation_here_bites_at_once_and_elsewhere_within_the_remembered_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    here, elsewhere = Roster(open_engine(url)), Roster(open_engine(url))
    alice, bob = here.add("alice", Limits()), here.add("bob", Limits())
    clock = Clock()
    auth = TokenAuth(here, remember=2.0, clock=clock)

    def who(token: str) -> str | None:
        found = asyncio.run(auth.authenticate(token))
        return found.name if found else None

    assert (who(alice), who(bob), who("rwg_unknown")) == ("alice", "bob", None)
    assert here.revoke("alice")  # through this process: at once
    assert who(alice) is None
    assert who(bob) == "bob"  # read again, and remembered
    assert elsewhere.revoke("bob")  # another process (the CLI): within the remembered time
    assert who(bob) == "bob"
    clock.now += 2.01
    assert who(bob) is None
    carol = elsewhere.add("carol", Limits())  # minted elsewhere: works at once
    assert who(carol) == "carol"
