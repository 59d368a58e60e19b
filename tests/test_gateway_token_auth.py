"""Token authentication: header forms, and that a revocation bites at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import requests

from runway_widget.gateway.auth import CredentialRevoked, TokenAuth, bare_token
from runway_widget.gateway.db.database import open_engine
from runway_widget.gateway.db.roster import Limits, Roster
from tests.gateway_support import free_port, serve_process, stop_process


def test_header_forms():
    assert bare_token("rwg_x") == "rwg_x"
    assert bare_token("Bearer rwg_x") == bare_token("token rwg_x") == "rwg_x"
    assert bare_token(None) is None and bare_token("") is None
    assert bare_token("Basic a b") is None and bare_token("x" * 600) is None


def test_revocation_bites_at_once_wherever_it_is_made(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    here, elsewhere = Roster(open_engine(url)), Roster(open_engine(url))
    alice, bob = here.add("alice", Limits()), here.add("bob", Limits())
    auth = TokenAuth(here)

    def who(token: str) -> str | None:
        try:
            found = asyncio.run(auth.authenticate(token))
        except CredentialRevoked:
            return "revoked"
        return found.name if found else None

    assert (who(alice), who(bob), who("rwg_unknown")) == ("alice", "bob", None)
    assert here.revoke("alice")  # through this process
    assert who(alice) == "revoked"
    assert who(bob) == "bob"
    assert elsewhere.revoke("bob")  # another process (the CLI): also at once
    assert who(bob) == "revoked"
    carol = elsewhere.add("carol", Limits())  # minted elsewhere: works at once
    assert who(carol) == "carol"


def test_a_revoke_from_the_cli_is_refused_by_a_running_gateway_on_its_next_request(tmp_path):
    db = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    token = Roster(open_engine(db)).add("dora", Limits(jobs=5))
    port = free_port()
    env = {"APIFRAME_API_KEY": "upstream-key", "RUNWAY_WIDGET_HOME": str(tmp_path)}
    gateway = serve_process(port, "--db", db, "--upstream", "demo", env=env)
    try:
        account = f"http://127.0.0.1:{port}/account"
        for _ in range(3):  # read a few times, so anything remembered would be warm
            assert requests.get(account, headers={"Authorization": token}, timeout=10).ok
        revoke = [sys.executable, "-m", "runway_widget.cli.commands", "gateway", "token", "revoke"]
        subprocess.run(
            [*revoke, "dora", "--db", db],
            check=True,
            capture_output=True,
            timeout=60,
            env={**os.environ, **env},
        )
        refused = requests.get(account, headers={"Authorization": token}, timeout=10)
    finally:
        stop_process(gateway)
    assert refused.status_code == 401
