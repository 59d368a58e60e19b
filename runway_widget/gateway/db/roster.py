"""Who may use the gateway: participants, their tokens and quotas, join codes, the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .database import jobs, join_codes, participants
from .tokens import hint, new_token, same_hash, secret_hash

__all__ = ["Limits", "LoopTokenReader", "Participant", "Roster", "RosterError"]

NAME_LIMIT = 64
NAME_ATTEMPTS = 50


# Built once: every API request runs it, and building a statement costs more than running it.
_BY_TOKEN = select(
    participants.c.id, participants.c.name, participants.c.admin, participants.c.token_hash
).where(participants.c.token_hash == bindparam("digest"), participants.c.revoked.is_(False))


def _holder(row: Any, digest: str) -> Participant | None:
    """The participant in a `_BY_TOKEN` row (id, name, admin, token_hash), if it matches."""
    if row is None or not same_hash(row[3], digest):
        return None
    return Participant(row[0], row[1], bool(row[2]))


class LoopTokenReader:
    """`Roster.authenticate` for embedded SQLite, called on one thread (the event loop).

    Every API request runs it. Through SQLAlchemy, the pool checkout, cache lookup and result
    wrapping cost about ten times the indexed read itself, so this runs the same compiled
    statement on a DBAPI connection of its own (outside any transaction: each read sees the
    latest commit, a revocation from another process included).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = str(_BY_TOKEN.compile(dialect=engine.dialect))
        self._dbapi: Any = None

    def __call__(self, token: str) -> Participant | None:
        digest = secret_hash(token)
        if self._dbapi is None:
            self._dbapi = self._engine.raw_connection()
        cursor = self._dbapi.cursor()
        try:
            cursor.execute(self._sql, (digest,))
            row = cursor.fetchone()
        finally:
            cursor.close()
        return _holder(row, digest)


class RosterError(Exception):
    """A roster change that cannot be made (a taken name, no seats left, an unknown code)."""


@dataclass(frozen=True)
class Limits:
    """A quota; ``None`` means unlimited."""

    jobs: int | None = None
    credits: int | None = None
    concurrent: int | None = None

    def values(self) -> dict[str, int | None]:
        return {
            "jobs_limit": self.jobs,
            "credits_limit": self.credits,
            "concurrent_limit": self.concurrent,
        }


@dataclass(frozen=True)
class Participant:
    """An authenticated caller: the ledger's row id and the name shown in reports."""

    id: int
    name: str
    admin: bool = False


class Roster:
    """Participants and join codes in the gateway's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- tokens ----------------------------------------------------------------------------

    def add(self, name: str, limits: Limits, *, admin: bool = False) -> str:
        """Create a participant and return their token (the only time it is ever seen)."""
        name = _clean_name(name)
        token = new_token()
        try:
            with self.engine.begin() as conn:
                row = _new_row(name, token, limits) | {"admin": admin}
                conn.execute(insert(participants).values(row))
        except IntegrityError:
            raise RosterError(f"a participant named {name!r} exists already") from None
        return token

    def revoke(self, name: str) -> bool:
        """Revoke a participant's token at once; False if there is nobody of that name."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(participants).where(participants.c.name == name).values(revoked=True)
            )
        return done.rowcount == 1

    def authenticate(self, token: str) -> Participant | None:
        """The participant holding ``token``, or None (unknown or revoked alike)."""
        digest = secret_hash(token)
        with self.engine.connect() as conn:
            row = conn.execute(_BY_TOKEN, {"digest": digest}).first()
        return _holder(row, digest)

    def by_id(self, participant_id: int) -> Participant | None:
        """The participant with this id unless revoked (a browser session names only the id)."""
        p = participants.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(p.id, p.name, p.admin).where(p.id == participant_id, p.revoked.is_(False))
            ).first()
        return Participant(row.id, row.name, bool(row.admin)) if row is not None else None

    def enroll(self, name: str, limits: Limits) -> int | None:
        """A participant known by name from elsewhere (a JupyterHub user), with no token.

        Created on first sight, its quota set to ``limits`` every time (the instructor may
        have changed the config); returns its id, or None once revoked.
        """
        name = _clean_name(name)
        p = participants.c
        for _ in range(2):  # a concurrent first sight may insert between our two statements
            with self.engine.begin() as conn:
                conn.execute(update(participants).where(p.name == name).values(limits.values()))
                row = conn.execute(select(p.id, p.revoked).where(p.name == name)).first()
                if row is not None:
                    return None if row.revoked else int(row.id)
            try:
                with self.engine.begin() as conn:
                    added = conn.execute(insert(participants).values(_new_row(name, None, limits)))
                    return int(added.inserted_primary_key[0])  # type: ignore[index]
            except IntegrityError:
                continue
        raise RosterError(f"cannot enroll {name!r}")

    def participants(self) -> list[dict[str, Any]]:
        """Every participant with quota and use (no token, not even hashed)."""
        columns = [c for c in participants.c if c.name != "token_hash"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).order_by(participants.c.id)).mappings()
            return [dict(row) for row in rows]

    # -- join codes ------------------------------------------------------------------------

    def add_join_code(self, code: str, seats: int, limits: Limits) -> None:
        if not code or len(code) < 4:
            raise RosterError("a join code needs at least 4 characters")
        if seats < 1:
            raise RosterError("a join code needs at least one seat")
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(join_codes).values(
                        code_hash=secret_hash(code),
                        hint=hint(code),
                        seats=seats,
                        seats_used=0,
                        created_at=time.time(),
                        **limits.values(),
                    )
                )
        except IntegrityError:
            raise RosterError("that join code exists already") from None

    def join_codes(self) -> list[dict[str, Any]]:
        columns = [c for c in join_codes.c if c.name != "code_hash"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).order_by(join_codes.c.id)).mappings()
            return [dict(row) for row in rows]

    def join(self, code: str, name: str) -> tuple[str, str]:
        """Take a seat of ``code``: ``(token, name)``; the name gets a suffix if taken."""
        base = _clean_name(name)
        for attempt in range(NAME_ATTEMPTS):
            candidate = base if attempt == 0 else f"{base}-{attempt + 1}"
            try:
                return self._take_seat(code, candidate), candidate
            except IntegrityError:
                continue
        raise RosterError(f"too many participants named {base!r}: choose another name")

    def _take_seat(self, code: str, name: str) -> str:
        token = new_token()
        with self.engine.begin() as conn:
            seat = conn.execute(
                update(join_codes)
                .where(
                    join_codes.c.code_hash == secret_hash(code),
                    join_codes.c.seats_used < join_codes.c.seats,
                )
                .values(seats_used=join_codes.c.seats_used + 1)
            )
            if seat.rowcount != 1:
                raise RosterError("unknown join code, or no seats left")
            row = conn.execute(
                select(join_codes).where(join_codes.c.code_hash == secret_hash(code))
            ).one()
            limits = Limits(row.jobs_limit, row.credits_limit, row.concurrent_limit)
            values = _new_row(name, token, limits) | {"join_code_id": row.id}
            conn.execute(insert(participants).values(values))
        return token

    # -- report ----------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        """Per participant: quota, use, and job counts by state (unknown ones to reconcile)."""
        with self.engine.connect() as conn:
            counts = conn.execute(
                select(jobs.c.participant_id, jobs.c.state, func.count()).group_by(
                    jobs.c.participant_id, jobs.c.state
                )
            ).all()
            unknown = conn.execute(
                select(jobs.c.participant_id, jobs.c.id, jobs.c.created_at, jobs.c.request).where(
                    jobs.c.state == "unknown"
                )
            ).all()
        by_state: dict[int, dict[str, int]] = {}
        for participant_id, state, count in counts:
            by_state.setdefault(participant_id, {})[state] = count
        rows = []
        for person in self.participants():
            states = by_state.get(person["id"], {})
            rows.append(
                {
                    "name": person["name"],
                    "revoked": bool(person["revoked"]),
                    "jobs_used": person["jobs_used"],
                    "jobs_limit": person["jobs_limit"],
                    "credits_used": person["credits_used"],
                    "credits_limit": person["credits_limit"],
                    "running": person["running"],
                    "finished": states.get("finished", 0),
                    "failed": states.get("failed", 0),
                    "refused": states.get("refused", 0),
                    "unknown": states.get("unknown", 0),
                    "unknown_submissions": [
                        {"job": job_id, "submitted_at": at, "request": request}
                        for owner, job_id, at, request in unknown
                        if owner == person["id"]
                    ],
                }
            )
        return rows


def _clean_name(name: str) -> str:
    cleaned = " ".join(str(name or "").split())[:NAME_LIMIT]
    if not cleaned:
        raise RosterError("a participant needs a name")
    return cleaned


def _new_row(name: str, token: str | None, limits: Limits) -> dict[str, Any]:
    return {
        "name": name,
        "token_hash": secret_hash(token) if token is not None else None,
        "jobs_used": 0,
        "credits_used": 0,
        "running": 0,
        "revoked": False,
        "admin": False,
        "created_at": time.time(),
        **limits.values(),
    }
