"""The instructor's commands on the room: ``gateway token|join|roster|clip|export|report``.

Each works on the gateway's database (``--db``; a running gateway sees the change at its
next request). What comes from participants (names, prompts) is printed through `inert`.
Data goes to stdout (tokens, codes, lists), messages to stderr. The same changes are
buttons on ``/admin``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._terminal import inert, inert_json
from ..errors import plural
from .web.report import limit_text, over_quota_text, quota_text

__all__ = ["UNLIMITED", "register_room_commands"]

UNLIMITED = "unlimited"
LIMITS = ("jobs", "credits", "concurrent")
PROG = "runway-widget gateway"
Command = Callable[[argparse.Namespace], int]


def register_room_commands(actions: Any) -> None:
    """Add the room's commands to ``gateway``'s sub-command parsers."""
    _token_commands(actions)
    _join_commands(actions)
    roster = actions.add_parser("roster", help="personal codes from a class list").add_subparsers(
        required=True, metavar="ACTION"
    )
    imported = roster.add_parser(
        "import",
        help="one participant and one personal join code per name in a CSV file "
        "(a 'name' column, or one name a line); names are fixed, not chosen when joining",
    )
    imported.add_argument("file", metavar="FILE.csv")
    imported.add_argument("--url", help="the gateway's address, for the join command printed")
    imported.add_argument("--out", help="write the codes to this CSV file (default: stdout)")
    _add_limits(imported)
    _add_db(imported)
    imported.set_defaults(run=_roster_import)

    clip = actions.add_parser("clip", help="the gallery's clips").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = clip.add_parser("list", help="every clip: its number, participant, prompt")
    _add_db(listing)
    listing.set_defaults(run=_clip_list)
    for action, hidden, text in (("hide", True, "from the gallery"), ("unhide", False, "again")):
        parser = clip.add_parser(action, help=f"show clip NUMBER {text}".replace("show", action))
        parser.add_argument("job", type=int, metavar="NUMBER", help="as `clip list` shows it")
        _add_db(parser)
        parser.set_defaults(run=_clip_hidden, hidden=hidden)

    export = actions.add_parser(
        "export", help="every clip with its prompt and participant, as one zip"
    )
    export.add_argument("out", metavar="OUT.zip")
    export.add_argument("--include-hidden", action="store_true", help="hidden clips too")
    _add_db(export)
    export.set_defaults(run=_export)

    report = actions.add_parser(
        "report", help="per participant: jobs, credits, failures, refusals by limit"
    )
    fmt = report.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    _add_db(report)
    report.set_defaults(run=_report)


def _token_commands(actions: Any) -> None:
    token = actions.add_parser("token", help="participants and their tokens").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = token.add_parser("add", help="mint a token for NAME (printed once)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--admin", action="store_true", help="sees the whole room and the report")
    _add_limits(add)
    _add_db(add)
    add.set_defaults(run=_token_add)
    listing = token.add_parser("list", help="participants, quotas and use")
    _add_db(listing)
    listing.set_defaults(run=_token_list)
    quota = token.add_parser("set", help="change NAME's quota (only the limits given)")
    quota.add_argument("name", metavar="NAME")
    _add_limits(quota)
    _add_db(quota)
    quota.set_defaults(run=_for_participant(_token_set))
    give = token.add_parser(
        "give-back", help="give NAME jobs or credits back (for jobs that should not count)"
    )
    give.add_argument("name", metavar="NAME")
    give.add_argument("--jobs", type=_count, default=0, help="jobs to give back")
    give.add_argument("--credits", type=_count, default=0, help="credits to give back")
    _add_db(give)
    give.set_defaults(run=_for_participant(_token_give_back))
    for action, text in (("revoke", "refused at once"), ("restore", "undo a revoke")):
        parser = token.add_parser(action, help=f"{action} NAME's access ({text})")
        parser.add_argument("name", metavar="NAME")
        _add_db(parser)
        parser.set_defaults(run=_for_participant(_token_revoke), revoked=action == "revoke")


def _join_commands(actions: Any) -> None:
    join = actions.add_parser("join", help="join codes").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = join.add_parser("add", help="a code participants exchange for a token")
    add.add_argument("code", metavar="CODE")
    add.add_argument("--seats", type=_seats, required=True)
    _add_limits(add)
    _add_db(add)
    add.set_defaults(run=_join_add)
    change = join.add_parser(
        "set", help="change a code's seats or quota (the quota also for those who joined)"
    )
    change.add_argument("code", metavar="CODE")
    change.add_argument("--seats", type=_seats)
    _add_limits(change)
    _add_db(change)
    change.set_defaults(run=_for_code(_join_set))
    for action, text in (("close", "no new seats"), ("reopen", "seats again")):
        parser = join.add_parser(action, help=f"{action} CODE ({text})")
        parser.add_argument("code", metavar="CODE")
        _add_db(parser)
        parser.set_defaults(run=_for_code(_join_closed), closed=action == "close")
    rotate = join.add_parser(
        "rotate", help="give CODE a new text (printed); the old one stops working"
    )
    rotate.add_argument("code", metavar="CODE")
    rotate.add_argument("--to", metavar="NEW", help="the new code (default: a random one)")
    _add_db(rotate)
    rotate.set_defaults(run=_for_code(_join_rotate))
    listing = join.add_parser("list", help="join codes in full, their state and seats taken")
    _add_db(listing)
    listing.set_defaults(run=_join_list)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the home)")


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=_limit, help="jobs allowed (N, or 'unlimited')")
    parser.add_argument(
        "--credits", type=_limit, help="credits allowed (5 per 5 s of video; or 'unlimited')"
    )
    parser.add_argument("--concurrent", type=_limit, help="jobs running at once")


def _limit(text: str) -> int | str:
    if text.strip().lower() in (UNLIMITED, "none", "∞"):
        return UNLIMITED
    return _count(text)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seats(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least one seat")
    return value


def _change(args: argparse.Namespace) -> dict[str, int | None]:
    """The limits given on the command line (``unlimited``: None); those not given: absent."""
    given = {key: getattr(args, key) for key in LIMITS if getattr(args, key) is not None}
    return {key: None if value == UNLIMITED else value for key, value in given.items()}


def _flags(args: argparse.Namespace, *names: str) -> str:
    """The options given, to repeat in a hint (``--seats 40 --jobs 5``)."""
    return "".join(
        f" --{name} {getattr(args, name)}" for name in names if getattr(args, name) is not None
    )


def _roster(args: argparse.Namespace) -> Any:
    from .db.database import open_engine
    from .db.roster import Roster

    return Roster(open_engine(args.db))


def _fail(message: str) -> int:
    print(f"error: {inert(message)}", file=sys.stderr)
    return 1


def _say(message: str) -> None:
    print(message, file=sys.stderr)


# -- tokens ----------------------------------------------------------------------------------


def _token_add(args: argparse.Namespace) -> int:
    from ..models import RefusalCode
    from .db.roster import Limits, RosterError

    roster = _roster(args)
    limits = Limits(**_change(args))
    try:
        token = roster.add(args.name, limits, admin=args.admin)
    except RosterError as exc:
        if exc.code is RefusalCode.NAME_TAKEN and roster.controls.find(args.name) is not None:
            flags = _flags(args, *LIMITS) or " --jobs N"
            return _fail(
                f"{args.name!r} exists already: change their quota with "
                f"`{PROG} token set {args.name}{flags}`"
            )
        return _fail(str(exc))
    print(token)
    _say(f"(shown once: give it to {inert(args.name)}; it is stored only as a hash)")
    return 0


def _token_list(args: argparse.Namespace) -> int:
    for row in _roster(args).report():
        state = "revoked" if row["revoked"] else "active"
        over = over_quota_text(row)
        print(
            f"{inert(row['name'])}\t{state}\tjobs {row['jobs_used']}/"
            f"{limit_text(row['jobs_limit'])}\tcredits {row['credits_used']}/"
            f"{limit_text(row['credits_limit'])}\trunning {row['running']}"
            + (f"\tover quota: {over}" if over else "")
        )
    return 0


def _for_participant(command: Callable[[argparse.Namespace, Any, int], int]) -> Command:
    """A command on the participant named NAME, exactly as listed (never a look-alike)."""

    def run(args: argparse.Namespace) -> int:
        roster = _roster(args)
        found = roster.controls.find(args.name)
        if found is None:
            alike = roster.look_alikes(args.name)
            hint = f"; names that look like it: {', '.join(map(repr, alike))}" if alike else ""
            return _fail(
                f"no participant named exactly {args.name!r}{hint} (see `{PROG} token list`)"
            )
        return command(args, roster, found)

    return run


def _for_code(command: Callable[[argparse.Namespace, Any, int], int]) -> Command:
    """A command on the join code CODE (in any case)."""

    def run(args: argparse.Namespace) -> int:
        roster = _roster(args)
        found = roster.codes.find(args.code)
        if found is None:
            return _fail(f"no join code {args.code!r} (see `{PROG} join list`)")
        return command(args, roster, found)

    return run


def _token_set(args: argparse.Namespace, roster: Any, found: int) -> int:
    change = _change(args)
    if not change:
        return _fail("give at least one of --jobs, --credits, --concurrent")
    row = roster.controls.set_quota(found, change)
    _say(f"{inert(row['name'])}: {quota_text(row)}")
    return 0


def _token_give_back(args: argparse.Namespace, roster: Any, found: int) -> int:
    from .db.roster import RosterError

    if not args.jobs and not args.credits:
        return _fail("give back at least one job (--jobs N) or credit (--credits N)")
    try:
        row = roster.controls.give_back(found, args.jobs, args.credits)
    except RosterError as exc:
        return _fail(str(exc))
    _say(f"{inert(row['name'])}: {quota_text(row)}")
    return 0


def _token_revoke(args: argparse.Namespace, roster: Any, found: int) -> int:
    name = roster.controls.set_revoked(found, args.revoked)
    _say(f"{'revoked' if args.revoked else 'restored'} {inert(name)}")
    door = roster.door_left_open(found) if args.revoked else None
    if door is not None:
        code, free = inert(door[0]), door[1]
        _say(
            f"they joined with {code}, which has {plural(free, 'free seat')}: their name and this "
            "machine are refused, but another name from another machine would get in; once "
            f"everyone has joined, `{PROG} join close {code}` shuts that door"
        )
    return 0


# -- join codes ------------------------------------------------------------------------------


def _join_add(args: argparse.Namespace) -> int:
    from .db.roster import RosterError

    roster = _roster(args)
    if roster.codes.find(args.code) is not None:
        flags = _flags(args, "seats", *LIMITS)
        return _fail(
            f"join code {args.code!r} exists already: change it with "
            f"`{PROG} join set {args.code}{flags}`"
        )
    try:
        roster.codes.add(args.code, args.seats, _change(args))
    except RosterError as exc:
        return _fail(str(exc))
    _say(f"join code added: {plural(args.seats, 'seat')}")
    return 0


def _join_set(args: argparse.Namespace, roster: Any, found: int) -> int:
    from .db.roster import RosterError

    change = _change(args)
    if args.seats is None and not change:
        return _fail("give --seats or a limit (--jobs, --credits, --concurrent)")
    try:
        changed = roster.codes.change(found, seats=args.seats, quota=change)
    except RosterError as exc:
        return _fail(str(exc))
    code = roster.codes.get(found)
    _say(f"{inert(code['code'] or code['hint'])}: {_code_text(code)}")
    if change:
        _say(f"the quota applies to new seats and to {plural(changed, 'participant')} who "
             "joined with it")
    return 0


def _join_closed(args: argparse.Namespace, roster: Any, found: int) -> int:
    roster.codes.set_closed(found, args.closed)
    _say(
        f"closed {inert(args.code)}: nobody joins with it until `{PROG} join reopen`"
        if args.closed
        else f"reopened {inert(args.code)}"
    )
    return 0


def _join_rotate(args: argparse.Namespace, roster: Any, found: int) -> int:
    from .db.roster import RosterError

    try:
        new = roster.codes.rotate(found, args.to)
    except RosterError as exc:
        return _fail(str(exc))
    print(new)
    _say(f"{inert(args.code)} no longer works; participants already in keep their seats")
    return 0


def _join_list(args: argparse.Namespace) -> int:
    for code in _roster(args).codes.listing():
        shown = code["code"] or f"{code['hint']} (from an earlier version: rotate to see it)"
        owner = f"\tpersonal: {inert(code['owner'])}" if code["personal"] else ""
        print(f"{inert(shown)}\t{_code_text(code)}{owner}")
    return 0


def _code_text(code: dict[str, Any]) -> str:
    return (
        f"{'closed' if code['closed'] else 'open'}\tseats {code['seats_used']}/{code['seats']}\t"
        f"jobs {limit_text(code['jobs_limit'])}\tcredits {limit_text(code['credits_limit'])}"
    )


# -- roster, clips, export, report -----------------------------------------------------------


def _roster_import(args: argparse.Namespace) -> int:
    from .db.roster import Limits, RosterError
    from .roster_file import RosterFileError, codes_csv, read_names

    try:
        names = read_names(Path(args.file))
    except RosterFileError as exc:
        return _fail(str(exc))
    try:
        made = _roster(args).add_roster(names, Limits(**_change(args)))
    except RosterError as exc:
        return _fail(f"nothing was added: {exc}")
    text = codes_csv(made, args.url)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        _say(f"{plural(len(made), 'personal code')} written to {args.out}")
    else:
        sys.stdout.write(inert(text, multiline=True))
    _say("each code joins once, as its name: `runway-widget join URL CODE`")
    return 0


def _clips(args: argparse.Namespace) -> Any:
    from .db.database import open_engine
    from .web.gallery import ClipFeed

    return ClipFeed(open_engine(args.db))


def _clip_list(args: argparse.Namespace) -> int:
    for clip in _clips(args).listing():
        state = "hidden" if clip["hidden"] else "shown"
        print(f"{clip['job']}\t{state}\t{inert(clip['participant'])}\t{inert(clip['prompt'])}")
    return 0


def _clip_hidden(args: argparse.Namespace) -> int:
    if not _clips(args).set_hidden(args.job, args.hidden):
        return _fail(f"no finished clip number {args.job} (see `{PROG} clip list`)")
    _say(f"clip {args.job} {'hidden from' if args.hidden else 'shown again in'} the gallery")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import write_export

    clips = _clips(args).listing()
    with open(args.out, "wb") as out:
        done = write_export(clips, out, include_hidden=args.include_hidden)
    missing = f"; {done.missing} listed without their file (not on this machine)"
    _say(f"{plural(done.clips, 'clip')} written to {args.out}" + (missing if done.missing else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    rows = _roster(args).report()
    if args.json:
        print(inert_json(rows))
        return 0
    if args.csv:
        from .web.report import report_csv

        sys.stdout.write(report_csv(rows))
        return 0
    for row in rows:
        over = over_quota_text(row)
        print(
            f"{inert(row['name'])}: {row['jobs_used']}/{limit_text(row['jobs_limit'])} jobs, "
            f"{row['credits_used']}/{limit_text(row['credits_limit'])} credits, "
            f"{row['finished']} finished, {row['failed']} failed, {row['running']} running"
            + (f", over quota: {over}" if over else "")
            + (
                f", {row['unknown']} UNKNOWN (check upstream, then `{PROG} token give-back`)"
                if row["unknown"]
                else ""
            )
            + (" [revoked]" if row["revoked"] else "")
        )
    return 0
