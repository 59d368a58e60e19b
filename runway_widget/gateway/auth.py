"""Who is calling: the seam every request passes through before anything else happens.

A `ParticipantAuth` turns the raw ``Authorization`` header into a `Participant`, or None
(missing or unknown: the caller is told 401 ``unauthorized``), or raises `CredentialRevoked`
for a credential the instructor revoked (401 ``token_revoked``: its holder learns that it
was revoked, which only they can ask about). Token mode
is `TokenAuth`; other modes (a JupyterHub service's hub tokens) implement the same protocol
and are chosen when the application is built. The header arrives as the client sends it:
the raw token, or ``Bearer <token>`` / ``token <token>`` (both forms are accepted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol, runtime_checkable

from .db.raw_statements import RawStatements
from .db.roster import CredentialRevoked, LoopTokenReader, Participant, RawTokenReader, Roster

__all__ = ["CredentialRevoked", "Participant", "ParticipantAuth", "TokenAuth", "bare_token"]

_SCHEMES = ("bearer", "token")
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

    Every request reads the token's current row (one indexed lookup by hash, a prebuilt
    statement), so a revocation made anywhere (this process, the CLI, another gateway on the
    same database) is refused on the very next request, and a token minted elsewhere works at
    once. With an ``executor`` (a networked database) the read runs there, on the thread's
    own connection when ``reads`` are given (`RawTokenReader`); without one (embedded SQLite,
    tens of microseconds with `LoopTokenReader`) it runs inline, sparing two thread switches.
    """

    def __init__(
        self,
        roster: Roster,
        executor: Executor | None = None,
        reads: RawStatements | None = None,
    ) -> None:
        self._roster = roster
        self._executor = executor
        embedded = executor is None and roster.engine.dialect.name == "sqlite"
        self._inline = LoopTokenReader(roster.engine) if embedded else roster.authenticate
        self._lookup: Callable[[str], Any] = (
            RawTokenReader(reads) if reads is not None else roster.authenticate
        )

    async def authenticate(self, authorization_header: str | None) -> Participant | None:
        token = bare_token(authorization_header)
        if token is None:
            return None
        if self._executor is None:
            return self._inline(token)
        loop = asyncio.get_running_loop()
        found: Participant | None = await loop.run_in_executor(
            self._executor, self._lookup, token
        )
        return found
