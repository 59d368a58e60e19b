"""``runway-widget gateway …`` (the instructor's side) and ``runway-widget join`` (a participant's).

Registered into the main parser by `register`; heavy imports (tornado, SQLAlchemy) happen
only when a gateway command runs. Tokens are printed once, by ``token add``, and never again.
Names, join-code hints and requests come from participants: everything printed from the
database goes through `inert`, so none of it can drive the instructor's terminal.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Any

from ..cli.terminal import inert, inert_json

__all__ = ["register"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(commands: Any) -> None:
    """Add ``gateway`` and ``join`` to the ``runway-widget`` sub-command parsers."""
    gateway = commands.add_parser("gateway", help="run a workshop gateway (one key, many people)")
    actions = gateway.add_subparsers(title="gateway commands", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="serve participants until Ctrl-C")
    serve.add_argument(
        "--host",
        help=f"address to listen on (default {DEFAULT_HOST}; with --jupyterhub, the host "
        "of JUPYTERHUB_SERVICE_URL; 0.0.0.0 in a container)",
    )
    serve.add_argument(
        "--port",
        type=int,
        help=f"port (default {DEFAULT_PORT}; with --jupyterhub, JUPYTERHUB_SERVICE_URL's)",
    )
    serve.add_argument(
        "--prefix",
        help="path the gateway is served under (default /; with --jupyterhub, "
        "JUPYTERHUB_SERVICE_PREFIX)",
    )
    serve.add_argument(
        "--upstream",
        default=None,
        help="'demo', or the API URL (default APIFRAME); key: APIFRAME_API_KEY",
    )
    serve.add_argument("--public-url", help="the gateway's public URL (upstream webhooks)")
    serve.add_argument(
        "--config", help="room settings: quotas per hub group, admins, gallery (TOML or JSON)"
    )
    serve.add_argument(
        "--jupyterhub",
        action="store_true",
        help="run as a JupyterHub service: hub users, their hub tokens, the hub's OAuth",
    )
    serve.add_argument(
        "--rate", type=float, default=10.0, help="requests per second per participant (default 10)"
    )
    serve.add_argument(
        "--allow-private-webhooks",
        action="store_true",
        help="let webhooks, clip copies and demo inputs reach loopback/private addresses "
        "(rehearsals on one machine only)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        type=_network,
        metavar="CIDR",
        help="a reverse proxy in front of the gateway (an address or CIDR; repeatable): only "
        "from these are X-Forwarded-For and X-Real-IP believed, for the /join limiter and the "
        "access log. Default: none; with --jupyterhub on a loopback address, loopback (where "
        "the hub's proxy is), unless given ('none' trusts nobody)",
    )
    serve.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often this process says it is alive (default 10); processes sharing "
        "PostgreSQL adopt its unfinished tasks after 3 missed beats",
    )
    _add_db(serve)
    serve.set_defaults(run=_serve)

    token = actions.add_parser("token", help="personal tokens").add_subparsers(
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
    revoke = token.add_parser("revoke", help="revoke NAME's token (refused at once)")
    revoke.add_argument("name", metavar="NAME")
    _add_db(revoke)
    revoke.set_defaults(run=_token_revoke)

    join = actions.add_parser("join", help="join codes").add_subparsers(
        required=True, metavar="ACTION"
    )
    join_add = join.add_parser("add", help="a code participants exchange for a token")
    join_add.add_argument("code", metavar="CODE")
    join_add.add_argument("--seats", type=int, required=True)
    _add_limits(join_add)
    _add_db(join_add)
    join_add.set_defaults(run=_join_add)
    join_list = join.add_parser("list", help="join codes and seats taken")
    _add_db(join_list)
    join_list.set_defaults(run=_join_list)

    report = actions.add_parser("report", help="per participant: jobs, credits, failures")
    fmt = report.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    _add_db(report)
    report.set_defaults(run=_report)

    participant = commands.add_parser("join", help="join a workshop gateway (stores your token)")
    participant.add_argument("url", metavar="URL")
    participant.add_argument("code", metavar="CODE")
    participant.add_argument("--name", default=None, help="your name in the room (default: login)")
    participant.set_defaults(run=_join)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the home)")


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, help="jobs allowed (default: no limit)")
    parser.add_argument("--credits", type=int, help="credits allowed (5 per 5 s of video)")
    parser.add_argument("--concurrent", type=int, help="jobs running at once")


def _network(text: str) -> str:
    from .proxies import parse_network

    if text.strip().lower() == "none":
        return "none"
    try:
        return str(parse_network(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or CIDR: {text!r}") from None


def _roster(args: argparse.Namespace) -> Any:
    from .db.database import open_engine
    from .db.roster import Roster

    return Roster(open_engine(args.db))


def _limits(args: argparse.Namespace) -> Any:
    from .db.roster import Limits

    return Limits(args.jobs, args.credits, args.concurrent)


def _fail(message: str) -> int:
    print(f"error: {inert(message)}", file=sys.stderr)
    return 1


def _serve(args: argparse.Namespace) -> int:
    from .app import GatewayServer
    from .db.followers import HEARTBEAT_SECONDS
    from .log_redaction import redact_tokens_in_logs
    from .room_config import RoomConfig, RoomConfigError

    if args.heartbeat is not None and args.heartbeat <= 0:
        return _fail("--heartbeat must be a positive number of seconds")

    try:
        room = RoomConfig.load(args.config)
    except RoomConfigError as exc:
        return _fail(str(exc))
    hub_auth = None
    assigned: tuple[str | None, int | None, str | None] = (None, None, None)
    named = None if args.trusted_proxy is None else [p for p in args.trusted_proxy if p != "none"]
    if args.jupyterhub:
        from .hub_auth import hub_proxies, hub_service_address, open_hub_auth

        try:
            hub_auth = open_hub_auth()
        except RuntimeError as exc:
            return _fail(str(exc))
        assigned = hub_service_address()
    host = _first(args.host, assigned[0], DEFAULT_HOST)
    port = _first(args.port, assigned[1], DEFAULT_PORT)
    prefix = _first(args.prefix, assigned[2], "/")
    proxies = hub_proxies(host, named) if args.jupyterhub else tuple(named or ())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    redact_tokens_in_logs(*logging.getLogger().handlers)
    server = GatewayServer(
        db=args.db,
        upstream=args.upstream,
        host=host,
        port=port,
        prefix=prefix,
        public_url=args.public_url,
        rate=args.rate,
        burst=max(1, int(args.rate * 2)),
        hub_auth=hub_auth,
        room=room,
        allow_private_webhooks=args.allow_private_webhooks,
        heartbeat=args.heartbeat or HEARTBEAT_SECONDS,
        trusted_proxies=proxies,
    )
    print(
        f"Gateway serving at {server.base_url} (upstream {server.upstream.client.base_url}; "
        f"proxy headers believed from: {', '.join(proxies) or 'nobody'})",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()
    return 0


def _first(*choices: Any) -> Any:
    """The first choice given: a flag, then what the hub assigned, then the default."""
    return next(choice for choice in choices if choice is not None)


def _token_add(args: argparse.Namespace) -> int:
    from .db.roster import RosterError

    try:
        token = _roster(args).add(args.name, _limits(args), admin=args.admin)
    except RosterError as exc:
        return _fail(str(exc))
    print(token)
    print(
        f"(shown once: give it to {inert(args.name)}; it is stored only as a hash)",
        file=sys.stderr,
    )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    for person in _roster(args).participants():
        state = "revoked" if person["revoked"] else "active"
        print(
            f"{inert(person['name'])}\t{state}\tjobs {person['jobs_used']}/"
            f"{_limit(person['jobs_limit'])}\tcredits {person['credits_used']}/"
            f"{_limit(person['credits_limit'])}\trunning {person['running']}"
        )
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    roster = _roster(args)
    revoked = roster.revoke(args.name)
    if revoked is None:
        alike = roster.look_alikes(args.name)
        hint = f"; names that look like it: {', '.join(map(repr, alike))}" if alike else ""
        return _fail(f"no participant named exactly {args.name!r}{hint}")
    print(f"revoked {inert(revoked)}", file=sys.stderr)
    return 0


def _join_add(args: argparse.Namespace) -> int:
    from .db.roster import RosterError

    try:
        _roster(args).add_join_code(args.code, args.seats, _limits(args))
    except RosterError as exc:
        return _fail(str(exc))
    print(f"join code added: {args.seats} seat(s)", file=sys.stderr)
    return 0


def _join_list(args: argparse.Namespace) -> int:
    for code in _roster(args).join_codes():
        print(
            f"{inert(code['hint'])}\tseats {code['seats_used']}/{code['seats']}\t"
            f"jobs {_limit(code['jobs_limit'])}\tcredits {_limit(code['credits_limit'])}"
        )
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
        print(
            f"{inert(row['name'])}: {row['jobs_used']}/{_limit(row['jobs_limit'])} jobs, "
            f"{row['credits_used']}/{_limit(row['credits_limit'])} credits, "
            f"{row['finished']} finished, {row['failed']} failed, {row['running']} running"
            + (
                f", {row['unknown']} UNKNOWN (check upstream before refunding)"
                if row["unknown"]
                else ""
            )
            + (" [revoked]" if row["revoked"] else "")
        )
    return 0


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


def _limit(value: int | None) -> str:
    return "∞" if value is None else str(value)
