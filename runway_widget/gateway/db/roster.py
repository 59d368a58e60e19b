"""Who may use the gateway: participants, their tokens and quotas, and how they join.

Names follow ``names``: a token or join name is stored in its normal form under a look-alike
key, and a name that looks like another participant's is refused (`RosterError` with
``name_confusable``), except that a second person joining under exactly the same name gets
it numbered (``ana-2``: many laptops log in as the same user). Hub users are found by their
exact hub name (`enroll`). The instructor's changes (revoke, restore, quota, give back)
take a name exactly as listed (`find`), never a look-alike.

A revoked participant cannot take a new seat: not under their name or one that looks like
it, and not from a machine that still holds their revoked token (``previous`` in `join`).
A new name from another machine can still join while the code has free seats: closing the
code (``join_codes``) or personal codes (`add_roster`) close that door too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ...models import RefusalCode
from .database import participants
from .join_codes import JoinCodes, RosterError, limit_columns
from .names import NAME_LIMIT, hub_key, look_key, normal_name
from .participant_controls import SHOWN_COLUMNS, ParticipantControls
from .raw_statements import RawStatements
from .room_report import room_report
from .tokens import new_token, same_hash, secret_hash

__all__ = [
    "CredentialRevoked",
    "Limits",
    "LoopTokenReader",
    "Participant",
    "RawTokenReader",
    "Roster",
    "RosterError",
]

NAME_ATTEMPTS = 50
SHOWN_HUB_NAME = 150  # a longer hub name is shown cut, tagged with its key (never merged)
_p = participants.c

# Built once: every API request runs it, and building a statement costs more than running it.
_BY_TOKEN = select(_p.id, _p.name, _p.admin, _p.token_hash, _p.revoked).where(
    _p.token_hash == bindparam("digest")
)


class CredentialRevoked(Exception):
    """A known token (or hub user) whose access the instructor revoked; ``name`` is theirs
    (for the access log: a refused request is still someone's)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__("revoked")
        self.name = name


def _holder(row: Any, digest: str) -> Participant | None:
    """The participant in a `_BY_TOKEN` row (id, name, admin, token_hash, revoked), if it
    matches; `CredentialRevoked` if it matches a revoked one."""
    if row is None or not same_hash(row[3], digest):
        return None
    if row[4]:
        raise CredentialRevoked(row[1])
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


class RawTokenReader:
    """`Roster.authenticate` on PostgreSQL, from any thread: the same compiled statement on
    the thread's own connection (`raw_statements`), outside any transaction."""

    def __init__(self, reads: RawStatements) -> None:
        self._first = reads.prepare(_BY_TOKEN)

    def __call__(self, token: str) -> Participant | None:
        digest = secret_hash(token)
        return _holder(self._first(digest=digest), digest)


@dataclass(frozen=True)
class Limits:
    """A quota; ``None`` means unlimited."""

    jobs: int | None = None
    credits: int | None = None
    concurrent: int | None = None

    def values(self) -> dict[str, int | None]:
        return limit_columns(self.change())

    def change(self) -> dict[str, int | None]:
        """Every limit, as a `QuotaChange`."""
        return {"jobs": self.jobs, "credits": self.credits, "concurrent": self.concurrent}


@dataclass(frozen=True)
class Participant:
    """An authenticated caller: the ledger's row id and the name shown in reports."""

    id: int
    name: str
    admin: bool = False


class Roster:
    """Participants, their tokens and quotas, and the join codes they take seats with."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.codes = JoinCodes(engine)
        self.controls = ParticipantControls(engine)

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
        """Revoke a participant at once (`ParticipantControls.find`); returns the name
        revoked, None if nobody has it."""
        found = self.controls.find(name)
        return self.controls.set_revoked(found, True) if found is not None else None

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
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_p.id, _p.name, _p.admin).where(
                    _p.id == participant_id, _p.revoked.is_(False)
                )
            ).first()
        return Participant(row.id, row.name, bool(row.admin)) if row is not None else None

    def enroll(self, name: str, limits: Limits) -> int | None:
        """A participant known by name from elsewhere (a JupyterHub user), with no token.

        Found by the exact hub name (`hub_key`), or by the row an earlier version made for
        exactly that name; else created, shown under that name (cut and tagged with its key
        if too long or shown by someone else already). Its quota is set to ``limits`` every
        time (the instructor may have changed the config), unless the instructor set this
        participant's own (`set_quota`); returns its id, or None once revoked.
        """
        key = hub_key(name)
        from_config = or_(_p.quota_own.is_(None), _p.quota_own.is_(False))
        for attempt in range(3):  # a concurrent first sight may insert between our statements
            with self.engine.begin() as conn:
                conn.execute(
                    update(participants)
                    .where(_p.hub_key == key, from_config)
                    .values(limits.values())
                )
                row = (
                    conn.execute(select(_p.id, _p.revoked).where(_p.hub_key == key)).first()
                    or conn.execute(
                        update(participants)
                        .where(
                            _p.name == name,
                            _p.hub_key.is_(None),
                            _p.token_hash.is_(None),
                            _p.join_code_id.is_(None),
                        )
                        .values(hub_key=key, **limits.values())
                        .returning(_p.id, _p.revoked)
                    ).first()
                )
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
        with self.engine.connect() as conn:
            rows = conn.execute(select(*SHOWN_COLUMNS).order_by(_p.id)).mappings()
            return [dict(row) for row in rows]

    def door_left_open(self, participant_id: int) -> tuple[str, int] | None:
        """``(code, free seats)`` when the code this participant joined with still has free
        seats: revoked, they could come back under a new name from another machine."""
        person = self.controls.participant(participant_id)
        code_id = person["join_code_id"] if person is not None else None
        code = self.codes.get(code_id) if code_id is not None else None
        if code is None or code["personal"] or code["closed"]:
            return None
        free = code["seats"] - code["seats_used"]
        return (code["code"] or code["hint"], free) if free > 0 else None

    # -- join codes and rosters ------------------------------------------------------------

    def add_join_code(self, code: str, seats: int, limits: Limits) -> int:
        return self.codes.add(code, seats, limits.change())

    def join_codes(self) -> list[dict[str, Any]]:
        return self.codes.listing()

    def add_roster(self, names: list[str], limits: Limits) -> list[tuple[str, str]]:
        """One participant and one personal code per name, all or none: ``[(name, code)]``.

        The names are fixed by the instructor: a code joins as its own name, whatever the
        participant types. `RosterError` lists every name that cannot be added.
        """
        normal: list[str] = []
        problems: list[str] = []
        keys: dict[str, str] = {}
        for typed in names:
            try:
                name = normal_name(typed)
                key = look_key(name)
            except ValueError as exc:
                problems.append(f"{typed!r}: {exc}")
                continue
            if key in keys:
                problems.append(f"{name!r} looks like {keys[key]!r}, also in the file")
                continue
            keys[key] = name
            normal.append(name)
        with self.engine.connect() as conn:
            present = conn.execute(
                select(_p.name, _p.name_key).where(_p.name_key.in_(list(keys)))
            ).all()
        problems += [
            f"{keys[row.name_key]!r} is (or looks like) {row.name!r}, a participant already"
            for row in present
        ]
        if problems:
            raise RosterError("; ".join(problems))
        made = []
        with self.engine.begin() as conn:
            for name in normal:
                row = _new_row(name, None, limits) | {"name_key": look_key(name)}
                added = conn.execute(insert(participants).values(row))
                owner = int(added.inserted_primary_key[0])  # type: ignore[index]
                made.append((name, self.codes.add_personal(conn, owner, limits.change())))
        return made

    def join(self, code: str, name: str, previous: str | None = None) -> tuple[str, str]:
        """Take a seat of ``code``: ``(token, name)``.

        A name already in the room, typed exactly as it is shown, is numbered (``ana-2``);
        one that only looks like another (`names`) is refused; so is a revoked
        participant's name, or a machine that sends (``previous``) a revoked token.
        A personal code joins as its owner, whatever ``name`` says.
        """
        if previous:
            self._not_revoked_token(previous)
        base = _normal(name)
        as_typed = base == name.strip()
        for attempt in range(NAME_ATTEMPTS):
            candidate = base if attempt == 0 else f"{base}-{attempt + 1}"
            if len(candidate) > NAME_LIMIT:
                break
            try:
                return self._take_seat(code, candidate, numbered=attempt > 0)
            except IntegrityError:
                if attempt == 0 and not (as_typed and self._shown_as(base)):
                    raise self._name_refusal(name, base) from None
        raise RosterError(
            f"the name {base!r} is taken: choose another name", RefusalCode.NAME_TAKEN
        )

    def _not_revoked_token(self, token: str) -> None:
        try:
            self.authenticate(token)
        except CredentialRevoked:
            raise RosterError(
                "this machine's workshop token was revoked: ask the instructor",
                RefusalCode.TOKEN_REVOKED,
            ) from None

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

    def _take_seat(self, code: str, name: str, *, numbered: bool) -> tuple[str, str]:
        """One seat for ``name`` (a numbered one: ``ana-2``, tried after ``ana``)."""
        token = new_token()
        with self.engine.begin() as conn:
            seat = self.codes.seat(conn, code)
            if seat.owner_id is not None:
                return token, _seat_owner(conn, seat.owner_id, token)
            if not numbered:  # a numbered name held by someone revoked is merely taken
                _refuse_revoked_name(conn, name)
            limits = Limits(seat.jobs_limit, seat.credits_limit, seat.concurrent_limit)
            values = _new_row(name, token, limits) | {"join_code_id": seat.id}
            conn.execute(insert(participants).values(values))
        return token, name

    # -- report ----------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        """Per participant: quota, use, jobs by state, refusals by limit (see `room_report`)."""
        return room_report(self.engine, self.participants())


def _refuse_revoked_name(conn: Any, name: str) -> None:
    """A revoked participant's name (or one that looks like it) takes no new seat."""
    revoked = conn.execute(
        select(_p.name).where(_p.name_key == look_key(name), _p.revoked.is_(True))
    ).first()
    if revoked is not None:
        raise RosterError(
            f"{revoked.name!r} was revoked in this room: ask the instructor",
            RefusalCode.TOKEN_REVOKED,
        )


def _seat_owner(conn: Any, owner_id: int, token: str) -> str:
    """A personal code's seat: its owner gets the token; returns the owner's name."""
    owner = conn.execute(select(_p.name, _p.revoked).where(_p.id == owner_id)).one()
    if owner.revoked:
        raise RosterError(
            f"{owner.name!r} was revoked in this room: ask the instructor",
            RefusalCode.TOKEN_REVOKED,
        )
    conn.execute(
        update(participants).where(_p.id == owner_id).values(token_hash=secret_hash(token))
    )
    return str(owner.name)


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
