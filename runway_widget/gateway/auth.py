"""Who is calling: the seam every request passes through before anything else happens.

A `ParticipantAuth` turns the raw ``Authorization`` header into a `Participant`, or None
(missing, unknown and revoked alike: the caller is told 401 and nothing more). Token mode
is `TokenAuth`; other modes (a JupyterHub service's hub tokens) implement the same protocol
and are chosen when the application is built. The header arrives as the client sends it:
the raw token, or ``Bearer <token>`` / ``token <token>`` (both forms are accepted).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol, runtime_checkable

from .roster import Participant, Roster
from .tokens import secret_hash

__all__ = ["Participant", "ParticipantAuth", "TokenAuth", "bare_token"]

_SCHEMES = ("bearer", "token")
REMEMBER_SECONDS = 2.0
REMEMBER_MAX = 10_000
MAX_HEADER = 512


@runtime_checkable
class ParticipantAuth(Protocol):
    """Authenticates one request from its ``Authorization`` header (None if absent)."""

    async def authenticate(self, authorization_header: str | None) -> Participant | None: ...


def bare_token(authorization_header: str | None) -> str | None:
    """The credential in the header, without a ``Bearer``/``token`` scheme; None if unusable."""
    if not authorization_header or len(authorization_header) > MAX_HEADER:
        return None
    parts = authorization_header.strip().split(None, 1)
    if len(parts) == 2 and parts[0].lower() in _SCHEMES:
        return parts[1].strip() or None
    return parts[0] if len(parts) == 1 else None


class TokenAuth:
    """Personal tokens minted by ``gateway token add`` or ``POST /join``, looked up by hash.

    A participant found is remembered for ``remember`` seconds, so a room polling every
    second costs the database a read per participant every few requests, not one per
    request. A revocation made through this process's `Roster` forgets them at once; one
    made elsewhere (the CLI, another gateway process) takes effect within ``remember``
    seconds. Unknown tokens are never remembered, so a token minted elsewhere works at once.
    With an ``executor`` (a networked database) the read runs there; without one (embedded
    SQLite, well under a millisecond) it runs inline, sparing two thread switches.
    """

    def __init__(
        self,
        roster: Roster,
        executor: Executor | None = None,
        *,
        remember: float = REMEMBER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._roster = roster
        self._executor = executor
        self._remember = remember
        self._clock = clock
        self._known: OrderedDict[str, tuple[Participant, float]] = OrderedDict()
        self._revision = roster.revision

    async def authenticate(self, authorization_header: str | None) -> Participant | None:
        token = bare_token(authorization_header)
        if token is None:
            return None
        digest, now = secret_hash(token), self._clock()
        if self._revision != self._roster.revision:  # revoked here: forget everyone
            self._known.clear()
            self._revision = self._roster.revision
        known = self._known.get(digest)
        if known is not None and known[1] > now:
            return known[0]
        if self._executor is None:
            participant = self._roster.authenticate(token)
        else:
            lookup: Callable[[str], Any] = self._roster.authenticate
            loop = asyncio.get_running_loop()
            participant = await loop.run_in_executor(self._executor, lookup, token)
        self._known.pop(digest, None)
        if participant is not None:
            self._known[digest] = (participant, now + self._remember)
            while len(self._known) > REMEMBER_MAX:
                self._known.popitem(last=False)
        return participant
