"""The hub's OAuth for a service with replicas: any replica finishes a sign-in another began.

JupyterHub's `HubOAuth` keeps each sign-in's state (the page to return to, the PKCE
verifier) in the memory of the process that began it; behind a Service, the hub's redirect
may come back to another replica, which knows nothing of it and cannot finish. `ReplicaHubOAuth`
keeps nothing: the state id carries the page to return to and the state cookie's name
(base64 JSON after a random part), sealed with an HMAC, and the PKCE verifier is an HMAC of
the id. Both keys come from the service's own hub API token, which every replica holds and
nobody else does. The verifier never leaves the replicas (the id goes through the browser
and the hub, the verifier only to the hub's token endpoint), an id cannot be forged, and
the state cookie, signed with the replicas' one cookie secret, must still equal the id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from jupyterhub.services.auth import HubOAuth
from tornado.web import RequestHandler

__all__ = ["ReplicaHubOAuth"]


class ReplicaHubOAuth(HubOAuth):
    """`HubOAuth` whose OAuth state any replica of the service can read."""

    def begin(self, handler: RequestHandler, next_url: str) -> tuple[str, str]:
        """Set the state cookie; returns the state and its PKCE challenge (S256)."""
        state = self.set_state_cookie(handler, next_url=next_url)
        digest = hashlib.sha256(self.code_verifier_for(state).encode()).digest()
        return state, _b64(digest)

    def code_verifier_for(self, state_id: str) -> str:
        return _b64(self._mac(b"pkce verifier", state_id))

    def generate_state(self, next_url: str | None = None, **extra_state: Any) -> str:
        fields = {"next_url": next_url, "cookie_name": extra_state.get("cookie_name")}
        unsealed = f"{secrets.token_urlsafe(16)}.{_b64(json.dumps(fields).encode())}"
        return f"{unsealed}.{_b64(self._mac(b'oauth state', unsealed)[:16])}"

    def _decode_state(self, state_id: str = "", /) -> dict[str, Any]:
        """The state's fields, or nothing for an id this service did not make."""
        unsealed, _, seal = state_id.rpartition(".")
        expected = _b64(self._mac(b"oauth state", unsealed)[:16])
        if not unsealed or not hmac.compare_digest(seal.encode(), expected.encode()):
            return {}
        packed = unsealed.partition(".")[2]
        fields = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
        next_url = fields.get("next_url")
        if not (isinstance(next_url, str) and next_url.startswith("/")) or next_url[:2] == "//":
            next_url = None  # a page of this service, never another site
        return {
            "next_url": next_url,
            "cookie_name": fields.get("cookie_name"),
            "code_verifier": self.code_verifier_for(state_id),
        }

    def _mac(self, purpose: bytes, text: str) -> bytes:
        key = hmac.new(self.api_token.encode(), b"runway-widget gateway " + purpose, "sha256")
        return hmac.new(key.digest(), text.encode(), "sha256").digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
