"""Who may use the gateway: participants, their tokens and quotas, join codes, the report.

Names follow ``names``: a token or join name is stored in its normal form under a look-alike
key, and a name that looks like another participant's is refused (`RosterError` with
``name_confusable``), except that a second person joining under exactly the same name gets
it numbered (``ana-2``: many laptops log in as the same user). Hub users are found by their
exact hub name (`enroll`). Revoking takes a name exactly as listed, never a look-alike.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ...models import RefusalCode
from .database import JobState, jobs, join_codes, participants
from .names import NAME_LIMIT, hub_key, look_key, normal_name
from .tokens import hint, new_token, same_hash, secret_hash

__all__ = [
    "CredentialRevoked",
    "Limits",
    "LoopTokenReader",
    "Participant",
    "Roster",
    "RosterError",
]

NAME_ATTEMPTS = 50
SHOWN_HUB_NAME = 150  # a longer hub name is shown cut, tagged with its key (never merged)
_PRIVATE_COLUMNS = ("token_hash", "name_key", "hub_key")
_p = participants.c

# Built once: every API request runs it, and building a statement costs more than running it.
_BY_TOKEN = select(_p.id, _p.name, _p.admin, _p.token_hash, _p.revoked).where(
    _p.token_hash == bindparam("digest")
)


class CredentialRevoked(Exception):
    """A known token (or hub user) whose access the instructor revoked."""


def _holder(row: Any, digest: str) -> Participant | None:
    """The participant in a `_BY_TOKEN` row (id, name, admin, token_hash, revoked), if it
    matches; `CredentialRevoked` if it matches a revoked one."""
    if row is None or not same_hash(row[3], digest):
        return None
    if row[4]:
        raise CredentialRevoked()
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
    """A roster change that cannot be made; ``code`` says why, for the participant's client."""

    def __init__(self, message: str, code: RefusalCode = RefusalCode.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code


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
        typed, name = name, _normal(name)
        token = new_token()
        try:
            with self.engine.begin() as conn:
                row = _new_row(name, token, limits) | {"admin": admin}
                conn.execute(insert(participants).values(row))
        except IntegrityError:
            raise self._name_refusal(typed, name) from None
        return token

    def revoke(self, name: str) -> str | None:
        """Revoke a participant at once; returns the name revoked, None if nobody has it.

        ``name`` as listed, or a hub user's exact hub name; the same text in another Unicode
        composition (an accent typed as two code points) is the same name. A look-alike
        (another case, full-width letters, an invisible character more) is never revoked:
        see `look_alikes`.
        """
        exact = [_p.name == name, _p.hub_key == hub_key(name)]
        composed = unicodedata.normalize("NFC", name)
        if composed != name:
            exact.append(_p.name == composed)
        with self.engine.begin() as conn:
            for where in exact:
                done = conn.execute(
                    update(participants).where(where).values(revoked=True).returning(_p.name)
                ).first()
                if done is not None:
                    return str(done.name)
        return None

    def look_alikes(self, name: str) -> list[str]:
        """The names in the room that look like ``name`` (to say which one was meant)."""
        try:
            key = look_key(name)
        except ValueError:
            return []
        with self.engine.connect() as conn:
            return list(conn.execute(select(_p.name).where(_p.name_key == key)).scalars())

    def authenticate(self, token: str) -> Participant | None:
        """The participant holding ``token``, None for an unknown one; raises
        `CredentialRevoked` for a revoked one."""
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

        Found by the exact hub name (`hub_key`), or by the row an earlier version made for
        exactly that name; else created, shown under that name (cut and tagged with its key
        if too long or shown by someone else already). Its quota is set to ``limits`` every
        time (the instructor may have changed the config); returns its id, or None once
        revoked.
        """
        key = hub_key(name)
        for attempt in range(3):  # a concurrent first sight may insert between our statements
            with self.engine.begin() as conn:
                row = conn.execute(
                    update(participants)
                    .where(_p.hub_key == key)
                    .values(limits.values())
                    .returning(_p.id, _p.revoked)
                ).first() or conn.execute(
                    update(participants)
                    .where(_p.name == name, _p.hub_key.is_(None), _p.token_hash.is_(None))
                    .values(hub_key=key, **limits.values())
                    .returning(_p.id, _p.revoked)
                ).first()
            if row is not None:
                return None if row.revoked else int(row.id)
            shown = name if attempt == 0 and _showable(name) else _tagged(name, key)
            try:
                with self.engine.begin() as conn:
                    values = _new_row(shown, None, limits) | {"hub_key": key}
                    added = conn.execute(insert(participants).values(values))
                    return int(added.inserted_primary_key[0])  # type: ignore[index]
            except IntegrityError:
                continue
        raise RosterError(f"cannot enroll {name!r}")

    def participants(self) -> list[dict[str, Any]]:
        """Every participant with quota and use (no token, not even hashed)."""
        columns = [c for c in participants.c if c.name not in _PRIVATE_COLUMNS]
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
        """Take a seat of ``code``: ``(token, name)``.

        A name already in the room, typed exactly as it is shown, is numbered (``ana-2``);
        one that only looks like another (`names`) is refused.
        """
        base = _normal(name)
        as_typed = base == name.strip()
        for attempt in range(NAME_ATTEMPTS):
            candidate = base if attempt == 0 else f"{base}-{attempt + 1}"
            if len(candidate) > NAME_LIMIT:
                break
            try:
                return self._take_seat(code, candidate), candidate
            except IntegrityError:
                if attempt == 0 and not (as_typed and self._shown_as(base)):
                    raise self._name_refusal(name, base) from None
        raise RosterError(
            f"the name {base!r} is taken: choose another name", RefusalCode.NAME_TAKEN
        )

    def _shown_as(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(_p.id).where(_p.name == name)).first() is not None

    def _name_refusal(self, typed: str, name: str) -> RosterError:
        """Why ``typed`` (stored as ``name``) could not be added: taken exactly as typed, or
        looking like another participant's name."""
        with self.engine.connect() as conn:
            others = (
                conn.execute(
                    select(_p.name).where(or_(_p.name == name, _p.name_key == look_key(name)))
                )
                .scalars()
                .all()
            )
        if not others or typed.strip() in others:
            return RosterError(
                f"a participant named {name!r} exists already", RefusalCode.NAME_TAKEN
            )
        return RosterError(
            f"the name {typed.strip()!r} looks like {others[0]!r}, already in the room: "
            "choose another",
            RefusalCode.NAME_CONFUSABLE,
        )

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
                known = conn.execute(
                    select(join_codes.c.id).where(join_codes.c.code_hash == secret_hash(code))
                ).first()
                if known is None:
                    raise RosterError("unknown join code", RefusalCode.JOIN_CODE_UNKNOWN)
                raise RosterError("this join code has no seats left", RefusalCode.ROOM_FULL)
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
                    jobs.c.state == JobState.UNKNOWN
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
                    "finished": states.get(JobState.FINISHED, 0),
                    "failed": states.get(JobState.FAILED, 0),
                    "refused": states.get(JobState.REFUSED, 0),
                    "unknown": states.get(JobState.UNKNOWN, 0),
                    "unknown_submissions": [
                        {"job": job_id, "submitted_at": at, "request": request}
                        for owner, job_id, at, request in unknown
                        if owner == person["id"]
                    ],
                }
            )
        return rows


def _normal(name: str) -> str:
    try:
        return normal_name(name)
    except ValueError as exc:
        raise RosterError(str(exc)) from None


def _showable(name: str) -> bool:
    return 0 < len(name) <= SHOWN_HUB_NAME and name.isprintable()


def _tagged(name: str, key: str) -> str:
    """A hub name too long (or already shown for someone else) cut, with its key's start."""
    shown = "".join(c if c.isprintable() else "\ufffd" for c in name)[:SHOWN_HUB_NAME]
    return f"{shown}~{key[:10]}"


def _new_row(name: str, token: str | None, limits: Limits) -> dict[str, Any]:
    """A participant row; a token holder's name is keyed by its look (hub users are not)."""
    return {
        "name": name,
        "name_key": look_key(name) if token is not None else None,
        "token_hash": secret_hash(token) if token is not None else None,
        "jobs_used": 0,
        "credits_used": 0,
        "running": 0,
        "revoked": False,
        "admin": False,
        "created_at": time.time(),
        **limits.values(),
    }
