"""``gateway queue show|first``: the jobs waiting for the upstream, from the instructor's side.

``show`` prints the queue's length, its longest wait, what runs upstream against the limit
(stated or learned) and each waiting job in the order it will go; ``first NAME`` puts one
participant's jobs at the head (a demo on the projector), ``--off`` back in line. Names come
from participants: everything printed goes through `inert`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._terminal import inert

__all__ = ["register_queue_commands"]


def register_queue_commands(actions: Any) -> None:
    """Add ``gateway queue`` to the gateway's sub-command parsers."""
    queue = actions.add_parser("queue", help="the jobs waiting for the upstream").add_subparsers(
        required=True, metavar="ACTION"
    )
    show = queue.add_parser("show", help="length, longest wait, the limit, each job in order")
    _add_db(show)
    show.set_defaults(run=_show)
    first = queue.add_parser(
        "first", help="put NAME's jobs at the head of the queue (a demo on the projector)"
    )
    first.add_argument("name", metavar="NAME")
    first.add_argument("--off", action="store_true", help="back in line with everyone")
    _add_db(first)
    first.set_defaults(run=_first)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the home)")


def _queue(args: argparse.Namespace) -> Any:
    from .db.database import open_engine
    from .db.queue import JobQueue

    return JobQueue(open_engine(args.db))


def _show(args: argparse.Namespace) -> int:
    queue = _queue(args)
    status = queue.status()
    oldest = status["oldest_wait"]
    limit = f"{status['limit']} ({'stated' if status['limit_stated'] else 'learned'})"
    print(
        f"{status['queued']} waiting"
        + (f", the longest for {oldest:.0f}s" if oldest is not None else "")
        + f"; {status['running_upstream']} running upstream, limit {limit}"
        + (f"; paused {status['paused_for']:.0f}s more" if status["paused_for"] else "")
    )
    for job in queue.waiting():
        mark = "\t(put first)" if job["first"] else ""
        print(
            f"{job['place']:4d}. {inert(job['name'])}\t{inert(job['task_id'])}\t"
            f"waiting {job['waited']:.0f}s{mark}"
        )
    return 0


def _first(args: argparse.Namespace) -> int:
    if _queue(args).put_first(args.name, not args.off) is None:
        print(f"error: no participant named exactly {inert(args.name)!r}", file=sys.stderr)
        return 1
    where = "back in line" if args.off else "at the head of the queue"
    print(f"{inert(args.name)}'s jobs are {where}", file=sys.stderr)
    return 0
