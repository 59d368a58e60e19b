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

from ..cli.terminal import inert

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


def _join(args: argparse.Namespace) -> int:
    from ..client.credentials import join_gateway

    try:
        joined = join_gateway(args.url, args.code, args.name or getpass.getuser())
    except (PermissionError, OSError) as exc:
        return _fail(str(exc))
    print(
        f"Joined {inert(joined['url'])} as {inert(joined['name'])}; "
        f"token stored in {joined['path']}",
        file=sys.stderr,
    )
    return 0
