"""Any replica of the service finishes a hub sign-in another began, and nobody else can.

Two `ReplicaHubOAuth` objects with the same service token stand for two replicas; the
state one makes, the other reads: the page to return to, the cookie's name and the PKCE
verifier whose challenge went to the hub. A state another token sealed, or one changed on
its way, reads as nothing (the callback then refuses it), and only pages of the service
are ever returned to.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

pytest.importorskip("jupyterhub")

from runway_widget.gateway.hub_oauth import ReplicaHubOAuth


class Handler:
    """What `set_state_cookie` asks of a tornado handler."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.request = type("Request", (), {"protocol": "http", "headers": {}})()

    def get_cookie(self, name: str) -> str | None:
        return self.cookies.get(name)

    def set_secure_cookie(self, name: str, value: str, **options: object) -> None:
        self.cookies[name] = value


def _replica(token: str = "service-token-shared-by-replicas") -> ReplicaHubOAuth:
    return ReplicaHubOAuth(
        api_token=token, api_url="http://hub:8081/hub/api", oauth_client_id="service-gw"
    )


def test_another_replica_reads_the_state_and_its_verifier():
    state, challenge = _replica().begin(Handler(), "/services/gw/gallery?since=1")
    other = _replica()
    verifier = other.get_code_verifier(state)
    assert other.get_next_url(state) == "/services/gw/gallery?since=1"
    assert other.get_state_cookie_name(state) == other.state_cookie_name
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == challenge
    assert verifier not in state and 43 <= len(verifier) <= 128


def test_a_state_sealed_elsewhere_or_changed_reads_as_nothing():
    state, _ = _replica().begin(Handler(), "/services/gw/gallery")
    stranger = _replica("another-service-token")
    assert stranger.get_code_verifier(state) is None
    assert stranger.get_next_url(state) == stranger.base_url
    nonce, packed, seal = state.split(".")
    evil = base64.urlsafe_b64encode(json.dumps({"next_url": "https://evil.example/"}).encode())
    forged = f"{nonce}.{evil.decode().rstrip('=')}.{seal}"
    assert _replica().get_next_url(forged) == _replica().base_url
    assert _replica().get_code_verifier(f"{nonce}.{packed}.x{seal[1:]}") is None


def test_only_pages_of_the_service_are_returned_to():
    replica = _replica()
    for elsewhere in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        state = replica.generate_state(elsewhere)
        assert replica.get_next_url(state) == replica.base_url, elsewhere
