"""Who is looking at a page (``/gallery``, ``/admin``): the browser side of `ParticipantAuth`.

A ``<video>`` tag or a page load cannot send an ``Authorization`` header, so browsers are
known by a cookie:

- token mode (`TokenLogin`): the instructor opens ``/gallery?token=…`` once; the gateway
  checks the token, keeps only the participant's id in a signed, HttpOnly cookie, and
  redirects to the same page without the token (so it leaves the address bar and history);
- JupyterHub mode (`HubLogin`): the hub's OAuth, as JupyterHub's own services do it; the
  hub's access token lives in `HubOAuth`'s signed cookie.

An ``Authorization`` header, when present, is used as is (scripts, the tests).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any, Protocol

from tornado.httputil import url_concat
from tornado.web import HTTPError, RequestHandler

from ..auth import ParticipantAuth
from ..db.roster import CredentialRevoked, Participant, Roster
from ..hub_auth import HubParticipants

__all__ = ["SESSION_COOKIE", "BrowserLogin", "HubLogin", "TokenLogin"]

SESSION_COOKIE = "runway-gateway-session"
SESSION_DAYS = 2
SIGN_IN_PROBLEM = "sign_in_problem"  # set on a page handler whose ?token= was refused


class BrowserLogin(Protocol):
    """Identifies a page's visitor, and sends an unknown one to where they can sign in."""

    async def identify(self, handler: RequestHandler) -> Participant | None: ...

    def sign_in(self, handler: RequestHandler) -> None: ...

    def xsrf(self, handler: RequestHandler) -> str:
        """What the page's own requests send as ``X-XSRFToken`` ("" when none is needed)."""
        ...

    def routes(self, prefix: str) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]: ...


class TokenLogin:
    """Personal or admin tokens; the browser keeps a signed cookie naming the participant."""

    def __init__(self, auth: ParticipantAuth, roster: Roster, executor: Executor | None) -> None:
        self._auth = auth
        self._roster = roster
        self._executor = executor

    async def identify(self, handler: RequestHandler) -> Participant | None:
        header = handler.request.headers.get("Authorization")
        if header:
            return await _unless_revoked(self._auth, header)
        token = handler.get_query_argument("token", None)
        if token:
            who = await _unless_revoked(self._auth, token, handler)
            if who is not None:
                handler.set_signed_cookie(
                    SESSION_COOKIE,
                    str(who.id),
                    expires_days=SESSION_DAYS,
                    path=_cookie_path(handler),
                    httponly=True,
                    samesite="Lax",
                    secure=handler.request.protocol == "https",
                )
            return who
        session = handler.get_signed_cookie(SESSION_COOKIE, max_age_days=SESSION_DAYS)
        if not session or not session.isdigit():
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._roster.by_id, int(session))

    def sign_in(self, handler: RequestHandler) -> None:
        """The sign-in page: how to open it with a token, or why the one given failed."""
        handler.set_status(401)
        problem = getattr(handler, SIGN_IN_PROBLEM, None)
        place = getattr(handler, "place", "this page")
        titles = {"wrong": "Wrong token", "revoked": "Token revoked"}
        handler.render(
            "signin.html", title=titles.get(problem or "", f"Sign in to {place}"), problem=problem
        )

    def xsrf(self, handler: RequestHandler) -> str:
        return ""  # the session cookie is SameSite=Lax and the pages only read

    def routes(self, prefix: str) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
        return []


class HubLogin:
    """JupyterHub users through the hub's OAuth; needs the service's access scope."""

    def __init__(self, participants: HubParticipants) -> None:
        self._participants = participants
        self.hub_auth = participants.hub_auth

    async def identify(self, handler: RequestHandler) -> Participant | None:
        header = handler.request.headers.get("Authorization")
        if header:
            return await _unless_revoked(self._participants, header)
        model = await self.hub_auth.get_user(handler, sync=False)
        if not model:
            return None
        try:
            who = await self._participants.participant_for(model)
        except CredentialRevoked:
            who = None
        if who is None:
            raise HTTPError(403, "this hub account may not use the gateway")
        return who

    def sign_in(self, handler: RequestHandler) -> None:
        """Off to the hub's OAuth authorize page, with a state cookie and PKCE (any replica
        takes the hub's redirect back: see ``hub_oauth``)."""
        state, challenge = self.hub_auth.begin(handler, handler.request.uri)
        handler.redirect(
            url_concat(
                self.hub_auth.login_url,
                {"state": state, "code_challenge": challenge, "code_challenge_method": "S256"},
            )
        )

    def xsrf(self, handler: RequestHandler) -> str:
        """The hub's XSRF token: its cookie login answers a script's fetch only with it."""
        token = handler.xsrf_token
        return token.decode() if isinstance(token, bytes) else str(token)

    def routes(self, prefix: str) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
        from jupyterhub.services.auth import HubOAuthCallbackHandler

        class OAuthCallback(HubOAuthCallbackHandler):
            def initialize(self, hub_auth: Any) -> None:
                self.hub_auth = hub_auth

        return [(prefix + "/oauth_callback", OAuthCallback, {"hub_auth": self.hub_auth})]


async def _unless_revoked(
    auth: ParticipantAuth, header: str, handler: RequestHandler | None = None
) -> Participant | None:
    """The visitor, None for a revoked credential as for an unknown one (the sign-in page);
    with a ``handler``, it is told which (`SIGN_IN_PROBLEM`: "wrong" or "revoked")."""
    try:
        who = await auth.authenticate(header)
        problem = "wrong"
    except CredentialRevoked:
        who, problem = None, "revoked"
    if who is None and handler is not None:
        setattr(handler, SIGN_IN_PROBLEM, problem)
    return who


def _cookie_path(handler: RequestHandler) -> str:
    prefix = handler.settings.get("gateway_prefix", "")
    return prefix + "/" if prefix else "/"
