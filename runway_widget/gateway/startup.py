"""``gateway serve``: a start that tells the truth.

Nothing says "ready" before it is: the port is taken first (a port in use is one line, as
``demo-server`` says it), then the upstream is asked for its account with the real key.
A refused key stops the start (nothing could be made); an upstream that does not answer
is said loudly, and the gateway serves anyway (participants are then told at once, and
charged nothing, until it answers). ``--upstream demo`` needs no check. Then the banner:
the addresses participants can use (with ``--host 0.0.0.0``, this machine's network
addresses, never 127.0.0.1), the ``join`` line for the board for each open code, and
where the gallery and ``/admin`` are.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from .._terminal import inert

__all__ = ["UpstreamCheck", "banner", "check_upstream", "register_serve"]

CHECK_SECONDS = 10.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
COOKIE_SECRET_ENV = "RUNWAY_GATEWAY_COOKIE_SECRET"  # signs browsers' cookies on every replica
MIN_COOKIE_SECRET = 32
PROG = "runway-widget gateway"


def register_serve(actions: Any) -> None:
    """Add ``gateway serve`` to the gateway's sub-command parsers."""
    serve = actions.add_parser(
        "serve",
        help="serve participants until Ctrl-C",
        description="Serve the workshop until Ctrl-C. Checks the port, the key and the "
        "upstream first, then prints the addresses to give participants, the join line for "
        "the board, and the gallery and admin pages.",
    )
    serve.add_argument(
        "--host",
        help=f"the address to listen on: {DEFAULT_HOST} (the default) for this machine only, "
        "0.0.0.0 for every network it is on (a room of laptops, a container), or one of its "
        "addresses; with --jupyterhub, the host of JUPYTERHUB_SERVICE_URL",
    )
    serve.add_argument(
        "--port",
        type=int,
        help=f"the port to listen on (default {DEFAULT_PORT}; 0: any free one; with "
        "--jupyterhub, JUPYTERHUB_SERVICE_URL's)",
    )
    serve.add_argument(
        "--prefix",
        help="the path the gateway is served under (default /; with --jupyterhub, "
        "JUPYTERHUB_SERVICE_PREFIX)",
    )
    serve.add_argument(
        "--upstream",
        default=None,
        help="'demo' (the embedded demo backend: rehearse, nothing paid), or the API URL "
        "(default APIFRAME); the key comes from APIFRAME_API_KEY, never from a flag",
    )
    serve.add_argument(
        "--public-url",
        help="the gateway's public URL, when it is reached through one (a proxy, a domain): "
        "printed for participants, and used for upstream webhooks",
    )
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
        "--upstream-concurrency",
        type=_positive,
        metavar="N",
        help="jobs the upstream runs at once for its key (your plan's limit); submissions "
        "past it wait in the gateway's fair queue. Default: learned from the upstream's "
        "'too many' answers. Give every process sharing a database the same value",
    )
    serve.add_argument(
        "--demo-concurrency",
        type=_positive,
        metavar="N",
        help="with --upstream demo: the demo refuses past N running jobs, as a provider "
        "does past its plan (a rehearsal of the queue)",
    )
    serve.add_argument(
        "--no-queue",
        action="store_true",
        help="send each submission upstream at once, in its own request: past the "
        "upstream's limit participants get its refusals (for comparison only)",
    )
    serve.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often this process says it is alive (default 10); processes sharing "
        "PostgreSQL adopt its unfinished tasks after 3 missed beats",
    )
    serve.add_argument(
        "--db", default=None, help="database URL (default: SQLite in RUNWAY_WIDGET_HOME)"
    )
    serve.add_argument(
        "--clips",
        metavar="DIR",
        help="where clips are kept (default: gateway-videos in RUNWAY_WIDGET_HOME); replicas "
        "sharing PostgreSQL share one folder they all mount",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="also serve /metrics without sign-in on this port (for Prometheus inside a "
        "cluster; on the gateway's own port /metrics is for admins)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object a line for a log collector (default: text)",
    )
    serve.set_defaults(run=_serve)


def _network(text: str) -> str:
    from .proxies import parse_network

    if text.strip().lower() == "none":
        return "none"
    try:
        return str(parse_network(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or CIDR: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of jobs from 1: {text!r}")
    return value


def _fail(message: str) -> int:
    print(f"error: {inert(message)}", file=sys.stderr)
    return 1


@dataclass(frozen=True)
class UpstreamCheck:
    """How the upstream answered at start: ``ok``, and what to say about it."""

    ok: bool
    fatal: bool
    text: str


def check_upstream(upstream: Any) -> UpstreamCheck:
    """Ask the upstream for the key's account, once, within `CHECK_SECONDS`."""
    from ..client.apiframe import ApiframeClient
    from ..errors import ApiframeError, AuthenticationError

    where = upstream.client.base_url
    if upstream.is_demo:
        return UpstreamCheck(True, False, "the embedded demo backend (nothing is paid)")
    probe = ApiframeClient(
        upstream.client.api_key,
        where,
        timeout=CHECK_SECONDS,
        max_retries=0,
        deadline=CHECK_SECONDS,
    )
    try:
        account = probe.account()
    except AuthenticationError as exc:
        return UpstreamCheck(
            False, True, f"{where} refused APIFRAME_API_KEY ({exc}): check the key; not serving"
        )
    except ApiframeError as exc:
        return UpstreamCheck(
            False,
            False,
            f"{where} does not answer ({exc}): participants' jobs are refused, and nothing "
            "is charged, until it does",
        )
    finally:
        probe.close()
    credits = account.get("credits")
    left = f"; credits left on the key: {credits}" if isinstance(credits, (int, float)) else ""
    return UpstreamCheck(True, False, f"{where} accepts the key{left}")


def banner(server: Any, upstream: UpstreamCheck, proxies: tuple[str, ...]) -> str:
    """What the instructor reads once the gateway serves (everything from the database is
    made inert: codes may hold anything an earlier version let in)."""
    said = upstream.text if upstream.ok else "NOT ANSWERING (see the warning above)"
    lines = [f"Gateway ready on port {server.port}, upstream: {said}"]
    if server.hub_mode:
        lines += [
            "  participants      through the hub: their kernels find the gateway, nothing typed",
            f"  projector         https://YOUR-HUB{server.prefix}/gallery",
            f"  admin             https://YOUR-HUB{server.prefix}/admin",
        ]
    else:
        lines += _room_lines(server)
    lines.append(f"  proxy headers believed from: {', '.join(proxies) or 'nobody'}")
    lines.append("Ctrl-C stops it.")
    return "\n".join(lines)


def _room_lines(server: Any) -> list[str]:
    """Token mode: the addresses, the join line for each open code, the pages."""
    from .addresses import only_this_machine

    urls = server.participant_urls
    url = urls[0]
    also = f"  (also {', '.join(urls[1:])})" if urls[1:] else ""
    lines = [f"  participants use  {url}{also}"]
    if only_this_machine(urls):
        lines.append(
            "  only this machine can reach it: serve with --host 0.0.0.0 for a room of laptops"
        )
    codes = [
        code
        for code in server.roster.codes.listing()
        if code["code"] and not (code["personal"] or code["closed"])
    ]
    for code in codes:
        seats = f"{code['seats'] - code['seats_used']} of {code['seats']} seats free"
        lines.append(
            f"  on the board      runway-widget join {url} {inert(code['code'])}  ({seats})"
        )
    if not codes:
        lines.append(f"  no open join code: `{PROG} join add CODE --seats N` (or token add)")
    lines.append(f"  projector         {url}/gallery?token=ADMIN-TOKEN")
    lines.append(f"  admin             {url}/admin?token=ADMIN-TOKEN")
    if not any(row["admin"] for row in server.roster.participants()):
        lines.append(f"  no admin token yet: `{PROG} token add teacher --admin` prints one")
    return lines


def _serve(args: argparse.Namespace) -> int:
    from .db.followers import HEARTBEAT_SECONDS
    from .log_format import configure_logging
    from .room_config import RoomConfig, RoomConfigError

    if args.heartbeat is not None and args.heartbeat <= 0:
        return _fail("--heartbeat must be a positive number of seconds")
    cookie_secret = os.environ.get(COOKIE_SECRET_ENV, "")
    if cookie_secret and len(cookie_secret) < MIN_COOKIE_SECRET:
        return _fail(f"{COOKIE_SECRET_ENV} must be at least {MIN_COOKIE_SECRET} characters")
    if args.demo_concurrency is not None and args.upstream != "demo":
        return _fail("--demo-concurrency is for --upstream demo")
    try:
        room = RoomConfig.load(args.config)
    except RoomConfigError as exc:
        return _fail(str(exc))
    try:
        host, port, prefix, hub_auth, proxies = _placement(args)
    except RuntimeError as exc:
        return _fail(str(exc))
    from .app import bind_port

    try:  # first: a taken port is one line, before anything starts
        sockets = bind_port(host, port)
    except OSError as exc:
        return _fail(f"cannot serve on {host}:{port}: {_bind_problem(exc)}")
    configure_logging(args.log_format)
    options = {
        "db": args.db,
        "upstream": args.upstream,
        "host": host,
        "port": port,
        "prefix": prefix,
        "public_url": args.public_url,
        "rate": args.rate,
        "burst": max(1, int(args.rate * 2)),
        "hub_auth": hub_auth,
        "room": room,
        "allow_private_webhooks": args.allow_private_webhooks,
        "heartbeat": args.heartbeat or HEARTBEAT_SECONDS,
        "trusted_proxies": proxies,
        "clips": args.clips,
        "cookie_secret": cookie_secret.encode() or None,
        "metrics_port": args.metrics_port,
        "upstream_concurrency": args.upstream_concurrency,
        "demo_concurrency": args.demo_concurrency,
        "queue": not args.no_queue,
    }
    server = _open(options)
    if server is None:
        for sock in sockets:
            sock.close()
        return 1
    server.bind(sockets)
    upstream = check_upstream(server.upstream)
    if upstream.fatal:
        server.stop()
        return _fail(f"the upstream {upstream.text}")
    say = _say_in(args.log_format)
    if not upstream.ok:
        say(f"WARNING: the upstream {upstream.text}")
    say(banner(server, upstream, proxies))
    server.serve_forever()
    return 0


def _say_in(log_format: str) -> Any:
    """How the start speaks: to the terminal, or as log records when the log is JSON (a
    log collector reads every line)."""
    if log_format == "json":
        return logging.getLogger("runway_widget.gateway").info
    return lambda text: print(text, file=sys.stderr, flush=True)


def _placement(args: argparse.Namespace) -> tuple[str, int, str, Any, tuple[str, ...]]:
    """Where to listen, under which path, the hub's OAuth (or None) and the trusted proxies:
    the flags first, then what the hub assigned, then the defaults."""
    hub_auth = None
    assigned: tuple[str | None, int | None, str | None] = (None, None, None)
    named = None if args.trusted_proxy is None else [p for p in args.trusted_proxy if p != "none"]
    if args.jupyterhub:
        from .hub_auth import hub_service_address, open_hub_auth

        hub_auth = open_hub_auth()
        assigned = hub_service_address()
    host = _first(args.host, assigned[0], DEFAULT_HOST)
    port = _first(args.port, assigned[1], DEFAULT_PORT)
    prefix = _first(args.prefix, assigned[2], "/")
    if args.jupyterhub:
        from .hub_auth import hub_proxies

        return host, port, prefix, hub_auth, hub_proxies(host, named)
    return host, port, prefix, hub_auth, tuple(named or ())


def _first(*choices: Any) -> Any:
    """The first choice given: a flag, then what the hub assigned, then the default."""
    return next(choice for choice in choices if choice is not None)


def _open(options: dict[str, Any]) -> Any:
    """The server, or None after saying in one line why it cannot be made."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from ..errors import ApiframeError
    from .app import GatewayServer

    try:
        return GatewayServer(**options)
    except ApiframeError as exc:  # no key, for a real upstream
        _fail(str(exc))
    except SQLAlchemyError as exc:
        shown = (
            make_url(options["db"]).render_as_string(hide_password=True) if options["db"] else ""
        )
        _fail(
            f"cannot open the database {shown or '(default)'}: {type(exc).__name__}: "
            f"{str(exc.orig if hasattr(exc, 'orig') else exc).splitlines()[0]}"
        )
    return None


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is taken (choose another --port, or 0 for a free one)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that is not an address of this machine (--host 0.0.0.0 listens on all of them)"
    if exc.errno == errno.EACCES:
        return "this user may not use that port (choose one above 1023)"
    return exc.strerror or str(exc)
