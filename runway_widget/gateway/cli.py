"""``runway-widget gateway …`` (the instructor's side) and ``runway-widget join`` (a participant's).

Registered into the main parser by `register`: ``serve`` in ``startup``, the room's commands
(tokens, join codes, rosters, clips, export, report) in ``room_commands``, the queue's in
``queue_commands``. Heavy imports
(tornado, SQLAlchemy) happen only when a gateway command runs. Tokens are printed once, by
``token add``, and never again. Names, codes and requests come from participants: everything
printed from the database goes through `inert`, so none of it can drive the instructor's
terminal.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from .._terminal import inert

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add ``gateway`` and ``join`` to the ``runway-widget`` sub-command parsers."""
    from .queue_commands import register_queue_commands
    from .room_commands import register_room_commands
    from .startup import register_serve

    gateway = commands.add_parser("gateway", help="run a workshop gateway (one key, many people)")
    actions = gateway.add_subparsers(title="gateway commands", required=True, metavar="ACTION")
    register_serve(actions)
    register_room_commands(actions)
    register_queue_commands(actions)

    participant = commands.add_parser("join", help="join a workshop gateway (stores your token)")
    participant.add_argument("url", metavar="URL")
    participant.add_argument("code", metavar="CODE")
    participant.add_argument("--name", default=None, help="your name in the room (default: login)")
    participant.set_defaults(run=_join)


def _fail(message: str) -> int:
    print(f"error: {inert(message)}", file=sys.stderr)
    return 1


# What a refusal of ``/join`` means for the participant, by its code; the others are said
# in the gateway's words (a name that looks like another's names it; a revoked one says so).
JOIN_REFUSALS = {
    "join_code_unknown": "{code!r} is not a join code there: check it on the board "
    "(capitals do not matter)",
    "join_code_closed": "the join code {code!r} is closed: the instructor can reopen it",
    "room_full": "every seat of {code!r} is taken: ask the instructor for more seats",
}
ANOTHER_NAME = ("name_taken", "name_confusable")


def _join(args: argparse.Namespace) -> int:
    from ..client.credentials import JoinError, join_gateway

    try:
        joined = join_gateway(args.url, args.code, args.name or getpass.getuser())
    except JoinError as exc:
        return _fail(_join_refused(exc, args.url, args.code))
    except OSError as exc:  # the seat is taken, the token could not be written
        return _fail(f"joined, but the token could not be stored ({exc}): ask the instructor")
    print(
        f"Joined {inert(joined['url'])} as {inert(joined['name'])}; "
        f"token stored in {joined['path']}",
        file=sys.stderr,
    )
    return 0


def _join_refused(exc: Exception, url: str, code: str) -> str:
    """One line: what went wrong, and the fix."""
    refusal = getattr(exc, "refusal", None) or ""
    if refusal in JOIN_REFUSALS:
        where = url.strip().rstrip("/")
        return f"could not join the workshop at {where}: {JOIN_REFUSALS[refusal].format(code=code)}"
    if refusal in ANOTHER_NAME:
        return f"{exc} (--name NAME)"
    return str(exc)
