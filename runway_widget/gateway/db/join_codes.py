"""Join codes: what participants trade for a token, and what the instructor changes about them.

A code is matched whatever its case or width (``room-42`` is ``ROOM-42``): it is kept as the
instructor wrote it, and looked up by the hash of its normal form (`normal_code`). Codes made
before they were kept are found by the hash of their exact text, and listed by their hint.

A room code has seats; a personal code (`add_personal`, from ``gateway roster import``) has
one seat and an owner, a participant made with it, whose name the code fixes. A code can be
closed and reopened, or rotated: it keeps its seats, quota and participants under a new text,
and the old text stops working at once.
"""

from __future__ import annotations

import secrets
import time
import unicodedata
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ...errors import plural
from ...models import RefusalCode
from .database import join_codes, participants
from .tokens import hint, secret_hash

__all__ = [
    "CODE_ALPHABET",
    "JoinCodes",
    "QuotaChange",
    "limit_columns",
    "new_code",
    "normal_code",
]

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a slip of paper
CODE_MIN = 4
CODE_MAX = 64
_c = join_codes.c
# what a code's row tells about it (never its hash)
_SHOWN = [c for c in join_codes.c if c.name != "code_hash"]

QuotaChange = Mapping[str, "int | None"]  # "jobs" | "credits" | "concurrent" -> limit (None: ∞)


def normal_code(code: str) -> str:
    """The form a code is matched in: NFKC, no surrounding space, upper case."""
    return unicodedata.normalize("NFKC", code).strip().upper()


def new_code(groups: int = 2) -> str:
    """A fresh random code, ``XXXX-XXXX`` (40 bits): short enough to type, hard to guess."""
    return "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(groups))


def limit_columns(change: QuotaChange) -> dict[str, int | None]:
    """``{"jobs": 5}`` as the columns it sets: ``{"jobs_limit": 5}``."""
    return {f"{key}_limit": value for key, value in change.items()}


def _hashes(code: str) -> list[str]:
    """The hashes ``code`` may be stored under: its normal form, or (older codes) exactly."""
    return list(dict.fromkeys([secret_hash(normal_code(code)), secret_hash(code)]))


class RosterError(Exception):
    """A roster change that cannot be made; ``code`` says why, for the participant's client."""

    def __init__(self, message: str, code: RefusalCode = RefusalCode.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code


class JoinCodes:
    """The join codes in the gateway's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- the instructor's side -------------------------------------------------------------

    def add(self, code: str, seats: int, quota: QuotaChange) -> int:
        """A new room code with ``seats``; returns its id. `RosterError` if it exists."""
        written = _checked(code)
        if seats < 1:
            raise RosterError("a join code needs at least one seat")
        try:
            with self.engine.begin() as conn:
                return _insert(conn, written, seats, quota)
        except IntegrityError:
            raise RosterError("that join code exists already") from None

    def find(self, code: str) -> int | None:
        """The id of the code written as ``code`` (any case), or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(_c.id).where(_c.code_hash.in_(_hashes(code)))
            ).scalar_one_or_none()

    def get(self, code_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_SHOWN).where(_c.id == code_id)).mappings().first()
        return _shown(dict(row)) if row is not None else None

    def listing(self) -> list[dict[str, Any]]:
        """Every code, room codes first, with its seats, quota, state and owner's name."""
        p = participants.c
        query = (
            select(*_SHOWN, p.name.label("owner"))
            .outerjoin(participants, p.id == _c.owner_id)
            .order_by(_c.owner_id.is_not(None), _c.id)
        )
        with self.engine.connect() as conn:
            return [_shown(dict(row)) for row in conn.execute(query).mappings()]

    def change(self, code_id: int, *, seats: int | None, quota: QuotaChange) -> int:
        """New seats and/or quota for a code; the quota also for the participants who joined
        with it (except those whose quota was set for them alone). Returns how many of those
        participants it changed."""
        with self.engine.begin() as conn:
            row = conn.execute(select(_c.seats_used).where(_c.id == code_id)).first()
            if row is None:
                raise RosterError("no such join code")
            values = limit_columns(quota)
            if seats is not None:
                if seats < max(1, row.seats_used):
                    raise RosterError(
                        f"{plural(row.seats_used, 'seat')} taken already: "
                        f"choose at least {max(1, row.seats_used)}"
                    )
                values["seats"] = seats
            if not values:
                return 0
            conn.execute(update(join_codes).where(_c.id == code_id).values(values))
            if not quota:
                return 0
            p = participants.c
            changed = conn.execute(
                update(participants)
                .where(p.join_code_id == code_id, or_(p.quota_own.is_(None), ~p.quota_own))
                .values(limit_columns(quota))
            )
            return int(changed.rowcount)

    def set_closed(self, code_id: int, closed: bool) -> bool:
        """Close (no new seats) or reopen a code; False if there is no such code."""
        with self.engine.begin() as conn:
            done = conn.execute(update(join_codes).where(_c.id == code_id).values(closed=closed))
        return done.rowcount == 1

    def rotate(self, code_id: int, new: str | None = None) -> str:
        """Give a code a new text (``new``, or a random one); the old one stops working."""
        written = _checked(new) if new else new_code()
        try:
            with self.engine.begin() as conn:
                done = conn.execute(
                    update(join_codes)
                    .where(_c.id == code_id)
                    .values(
                        code=written,
                        code_hash=secret_hash(normal_code(written)),
                        hint=hint(written),
                    )
                )
        except IntegrityError:
            raise RosterError("that join code exists already") from None
        if done.rowcount != 1:
            raise RosterError("no such join code")
        return written

    def add_personal(self, conn: Connection, owner_id: int, quota: QuotaChange) -> str:
        """A one-seat code for participant ``owner_id`` (inside the caller's transaction)."""
        for _ in range(5):
            code = new_code()
            taken = conn.execute(select(_c.id).where(_c.code_hash == secret_hash(code))).first()
            if taken is None:
                code_id = _insert(conn, code, 1, quota, owner_id=owner_id)
                p = participants.c
                conn.execute(
                    update(participants).where(p.id == owner_id).values(join_code_id=code_id)
                )
                return code
        raise RosterError("could not make a fresh personal code")  # pragma: no cover

    # -- a participant's side --------------------------------------------------------------

    def seat(self, conn: Connection, code: str) -> Any:
        """Take one seat of ``code`` inside the caller's transaction; returns the code's row.

        Refuses with the reason a participant can act on: no such code, closed, or full.
        """
        row = conn.execute(select(join_codes).where(_c.code_hash.in_(_hashes(code)))).first()
        if row is None:
            raise RosterError(
                "unknown join code: check it with the instructor", RefusalCode.JOIN_CODE_UNKNOWN
            )
        if row.closed:
            raise RosterError(
                "this join code is closed: ask the instructor", RefusalCode.JOIN_CODE_CLOSED
            )
        taken = conn.execute(
            update(join_codes)
            .where(_c.id == row.id, _c.seats_used < _c.seats)
            .values(seats_used=_c.seats_used + 1)
        )
        if taken.rowcount != 1:
            if row.owner_id is not None:
                raise RosterError(
                    "this personal code was used already: ask the instructor",
                    RefusalCode.ROOM_FULL,
                )
            raise RosterError(
                "the room is full: every seat of this join code is taken; ask the instructor",
                RefusalCode.ROOM_FULL,
            )
        return row


def _checked(code: str) -> str:
    written = unicodedata.normalize("NFKC", code).strip()
    if len(written) < CODE_MIN:
        raise RosterError(f"a join code needs at least {CODE_MIN} characters")
    if len(written) > CODE_MAX or not written.isprintable():
        raise RosterError(f"a join code has at most {CODE_MAX} printable characters")
    return written


def _insert(
    conn: Connection, code: str, seats: int, quota: QuotaChange, *, owner_id: int | None = None
) -> int:
    added = conn.execute(
        insert(join_codes).values(
            code=code,
            code_hash=secret_hash(normal_code(code)),
            hint=hint(code),
            seats=seats,
            seats_used=0,
            created_at=time.time(),
            closed=False,
            owner_id=owner_id,
            **{f"{key}_limit": quota.get(key) for key in ("jobs", "credits", "concurrent")},
        )
    )
    return int(added.inserted_primary_key[0])  # type: ignore[index]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    row["closed"] = bool(row.get("closed"))
    row["personal"] = row.get("owner_id") is not None
    return row
