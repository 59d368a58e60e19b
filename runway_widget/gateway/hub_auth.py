"""``gateway serve --jupyterhub``: the hub says who is calling, the room config says their quota.

A participant's kernel sends its server's hub token (``JUPYTERHUB_API_TOKEN``) as its key;
a browser signs in through the hub's OAuth (`HubOAuth`, as in JupyterHub's service
examples). Either way the hub returns the user's model: the token must carry
``access:services!service=<this service>`` (the instructor's config grants it to every
server), the exact name becomes the participant (never folded or cut: see ``db.names``),
the groups pick the quota (`RoomConfig`), and hub admins are gateway admins. The hub's
answers are cached by `HubAuth` (``cache_max_age``); quotas are written to the roster when
first seen or when the config gives a new one, and a user revoked with ``gateway token
revoke NAME`` is refused at their next request.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .auth import bare_token
from .db.roster import CredentialRevoked, Limits, Participant, Roster
from .proxies import LOOPBACK, is_loopback_host
from .room_config import RoomConfig

__all__ = ["HubParticipants", "hub_proxies", "hub_service_address", "open_hub_auth"]

HUB_CACHE_SECONDS = 60
ENROLL_REFRESH_SECONDS = 60.0


def open_hub_auth() -> Any:
    """A `HubOAuth` for this service, configured from the environment the hub gives it
    (one whose sign-ins any replica finishes: see ``hub_oauth``)."""
    try:
        from .hub_oauth import ReplicaHubOAuth
    except ImportError:
        raise RuntimeError(
            "--jupyterhub needs the jupyterhub package in the gateway's environment "
            "(pip install jupyterhub)"
        ) from None
    missing = [n for n in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL") if not os.environ.get(n)]
    if missing:
        raise RuntimeError(
            f"--jupyterhub runs as a JupyterHub service, but {', '.join(missing)} is not set: "
            "list the gateway in c.JupyterHub.services (see docs/jupyterhub_config.py), or "
            "give a gateway of its own these variables (see docs/z2jh/gateway.yaml)"
        )
    return ReplicaHubOAuth(cache_max_age=HUB_CACHE_SECONDS)


def hub_service_address() -> tuple[str | None, int | None, str | None]:
    """``(host, port, prefix)`` the hub assigned: ``JUPYTERHUB_SERVICE_URL`` and ``…_PREFIX``.

    None for what is not set. The URL is where to listen (a hub-managed service's ``url``,
    or the bind address an external one is given); a URL without a port means the scheme's.
    """
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or None
    if not url:
        return None, None, prefix
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or None, port, prefix


def hub_proxies(host: str | None, named: list[str] | None) -> tuple[str, ...]:
    """The proxies a hub service trusts: those ``named`` (``[]``: none), else the hub's own.

    A service bound to a loopback address is reached through the hub's proxy on the same
    machine, so by default loopback is trusted. Bound anywhere else (Kubernetes: the pod's
    address), the proxy cannot be told apart by address: name it with ``--trusted-proxy``.
    """
    if named is not None:
        return tuple(named)
    return LOOPBACK if is_loopback_host(host) else ()


@dataclass(frozen=True)
class _Enrolled:
    id: int
    limits: Limits
    at: float


class HubParticipants:
    """`ParticipantAuth` for hub tokens, and the mapping from a hub user model to a participant."""

    def __init__(
        self,
        hub_auth: Any,
        roster: Roster,
        room: RoomConfig,
        executor: Executor | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = ENROLL_REFRESH_SECONDS,
    ) -> None:
        self.hub_auth = hub_auth
        self.room = room
        self._roster = roster
        self._executor = executor
        self._clock = clock
        self._refresh = refresh
        self._enrolled: dict[str, _Enrolled] = {}

    async def authenticate(self, authorization_header: str | None) -> Participant | None:
        """The hub user whose token is in the header (raw, ``token X`` or ``Bearer X``)."""
        token = bare_token(authorization_header)
        if token is None:
            return None
        model = await self.hub_auth.user_for_token(token, sync=False)
        return await self.participant_for(model)

    async def participant_for(self, model: Mapping[str, Any] | None) -> Participant | None:
        """The participant for a hub user model, or None without this service's access scope;
        `CredentialRevoked` once the instructor revoked the user."""
        if not model or model.get("kind", "user") != "user" or not self.allows(model):
            return None
        name = str(model["name"])
        groups = [str(g) for g in model.get("groups") or []]
        participant_id = await self._enroll(name, self.room.limits_for(groups))
        if participant_id is None:
            raise CredentialRevoked(name)
        admin = bool(model.get("admin")) or self.room.is_admin(name, groups)
        return Participant(participant_id, name, admin)

    def allows(self, model: Mapping[str, Any]) -> bool:
        """True when the model's token holds one of this service's access scopes."""
        from jupyterhub.services.auth import check_scopes

        required = self.hub_auth.access_scopes
        return bool(required) and bool(check_scopes(required, set(model.get("scopes") or [])))

    async def _enroll(self, name: str, limits: Limits) -> int | None:
        """The user's roster id, None once revoked; the quota is written when new or changed.

        Writing is skipped for a minute after the last write of the same quota, but the
        revocation check reads the roster on every call, so a revocation acts at once.
        """
        loop = asyncio.get_running_loop()
        now = self._clock()
        known = self._enrolled.get(name)
        if known is not None and known.limits == limits and now - known.at < self._refresh:
            still = await loop.run_in_executor(self._executor, self._roster.by_id, known.id)
            return known.id if still is not None else None
        participant_id = await loop.run_in_executor(
            self._executor, self._roster.enroll, name, limits
        )
        if participant_id is not None:
            self._enrolled[name] = _Enrolled(participant_id, limits, now)
        return participant_id
