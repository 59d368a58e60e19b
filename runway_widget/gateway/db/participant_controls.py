"""The instructor's changes to one participant: revoke and restore, quota, jobs given back.

Each takes the participant's id; `ParticipantControls.find` turns a name typed on the
command line into one, exactly as listed and never a look-alike (a name that only looks
like another's must not revoke the wrong person).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from sqlalchemy import Engine, select, update

from .database import participants
from .join_codes import QuotaChange, RosterError, limit_columns
from .names import hub_key

__all__ = ["SHOWN_COLUMNS", "ParticipantControls"]

_PRIVATE_COLUMNS = ("token_hash", "name_key", "hub_key")
_p = participants.c
# a participant as anyone may see them: no token, not even hashed
SHOWN_COLUMNS = [c for c in participants.c if c.name not in _PRIVATE_COLUMNS]


class ParticipantControls:
    """Changes the instructor makes to participants, in the gateway's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, name: str) -> int | None:
        """The participant named exactly ``name`` (as listed, or a hub user's exact name).

        The same text in another Unicode composition (an accent typed as two code points)
        is the same name. A look-alike (another case, full-width letters, an invisible
        character more) is never taken for it: see `look_alikes`.
        """
        exact = [_p.name == name, _p.hub_key == hub_key(name)]
        composed = unicodedata.normalize("NFC", name)
        if composed != name:
            exact.append(_p.name == composed)
        with self.engine.connect() as conn:
            for where in exact:
                found = conn.execute(select(_p.id).where(where)).scalar_one_or_none()
                if found is not None:
                    return int(found)
        return None

    def set_revoked(self, participant_id: int, revoked: bool) -> str | None:
        """Revoke (refused from the next request on) or restore; returns their name."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(participants)
                .where(_p.id == participant_id)
                .values(revoked=revoked)
                .returning(_p.name)
            ).first()
        return str(done.name) if done is not None else None

    def set_quota(self, participant_id: int, change: QuotaChange) -> dict[str, Any] | None:
        """Change some of a participant's limits (None: unlimited). The quota is theirs from
        then on: a join code's or the hub config's no longer overwrites it."""
        with self.engine.begin() as conn:
            conn.execute(
                update(participants)
                .where(_p.id == participant_id)
                .values(limit_columns(change) | {"quota_own": True})
            )
        return self.participant(participant_id)

    def give_back(self, participant_id: int, jobs: int, credits: int) -> dict[str, Any] | None:
        """Give ``jobs`` and ``credits`` back (never below zero used): the quota as it was
        before jobs the instructor wants not to count (unknown submissions that never ran)."""
        if jobs < 0 or credits < 0:
            raise RosterError("give back a positive number of jobs or credits")
        with self.engine.begin() as conn:
            row = conn.execute(
                select(_p.jobs_used, _p.credits_used).where(_p.id == participant_id)
            ).first()
            if row is None:
                return None
            conn.execute(
                update(participants)
                .where(_p.id == participant_id)
                .values(
                    jobs_used=max(0, row.jobs_used - jobs),
                    credits_used=max(0, row.credits_used - credits),
                )
            )
        return self.participant(participant_id)

    def participant(self, participant_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(*SHOWN_COLUMNS).where(_p.id == participant_id))
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None
