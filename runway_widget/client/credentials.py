"""Where a client's API key and base URL come from when the caller gives none.

In order, the first that applies wins:

1. the arguments (``ApiframeClient(api_key=…, base_url=…)``);
2. ``APIFRAME_API_KEY`` / ``APIFRAME_BASE_URL`` in the environment;
3. a JupyterHub server whose spawner set ``RUNWAY_GATEWAY_URL``: the workshop gateway,
   authenticated with the server's own ``JUPYTERHUB_API_TOKEN`` (nothing typed);
4. the personal token that ``runway-widget join URL CODE`` stored in the user's config
   (a file only its owner can read, never a notebook);
5. nothing: the panel then falls back to the demo backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .._http.deadlines import DeadlinePassed
from .._http.replies import error_messages, refusal_code
from .._http.session import Reply, ReplyTooLarge, Session
from .._http.transport import ReadTimeout, Transport, TransportError
from .._version import __version__
from ..errors import ApiframeError, shorten
from ..models import is_http_url

__all__ = [
    "CONFIG_DIR_ENV",
    "GATEWAY_URL_ENV",
    "Credentials",
    "JoinError",
    "config_path",
    "join_gateway",
    "load_joined",
    "resolve",
]

CONFIG_DIR_ENV = "RUNWAY_WIDGET_CONFIG_DIR"
GATEWAY_URL_ENV = "RUNWAY_GATEWAY_URL"
HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
HUB_USER_ENV = "JUPYTERHUB_USER"
JOIN_FILE = "gateway.json"
JOIN_DEADLINE = 15.0  # the whole join, however slowly the gateway answers
JOIN_REPLY_LIMIT = 64 * 1024  # a token and a name; more is not a gateway


class JoinError(ApiframeError):
    """Joining failed: nothing answered at the address, or the gateway refused (its reason
    in ``refusal``: ``join_code_unknown``, ``room_full``, ``name_taken``, …)."""


@dataclass(frozen=True)
class Credentials:
    """A key (maybe None), a base URL (None: the default service) and where they came from."""

    api_key: str | None = field(repr=False)
    base_url: str | None
    source: str  # "argument", "environment", "jupyterhub", "join" or "none"
    participant: str | None = None  # the name at a workshop gateway (joined, or the hub user)


def config_path() -> Path:
    """``$RUNWAY_WIDGET_CONFIG_DIR/gateway.json``, else in the per-user config directory."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    root = (
        Path(folder).expanduser() if folder else Path(platformdirs.user_config_dir("runway_widget"))
    )
    return root / JOIN_FILE


def resolve(api_key: str | None = None, base_url: str | None = None) -> Credentials:
    """The key and base URL a client should use (see the module docstring for the order)."""
    env_base = os.environ.get("APIFRAME_BASE_URL") or None
    if api_key:
        return Credentials(api_key, base_url or env_base, "argument")
    env_key = os.environ.get("APIFRAME_API_KEY")
    if env_key:
        return Credentials(env_key, base_url or env_base, "environment")
    hub_url, hub_token = os.environ.get(GATEWAY_URL_ENV), os.environ.get(HUB_TOKEN_ENV)
    if hub_url and hub_token and _same_backend(base_url, hub_url):
        return Credentials(hub_token, base_url or hub_url.rstrip("/"), "jupyterhub",
                           os.environ.get(HUB_USER_ENV) or None)
    joined = load_joined()
    if joined is not None and _same_backend(base_url, joined["url"]):
        return Credentials(joined["token"], base_url or joined["url"], "join",
                           joined["name"] or None)
    return Credentials(None, base_url or env_base, "none")


def load_joined() -> dict[str, str] | None:
    """The stored ``{"url", "token", "name"}`` of ``runway-widget join``, or None."""
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) and data.get(k) for k in ("url", "token")
    ):
        return None
    name = data.get("name")
    return {"url": data["url"].rstrip("/"), "token": data["token"],
            "name": name if isinstance(name, str) else ""}


def join_gateway(
    url: str,
    code: str,
    name: str,
    *,
    deadline: float = JOIN_DEADLINE,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Take a seat at a workshop gateway and store the personal token; returns what was stored.

    The token is written to `config_path` with mode 0600 (its owner only); only the name
    and URL are returned for display, never the token. A token this machine already holds
    for the same gateway is sent along, so the gateway can refuse a revoked participant's
    machine a new seat under another name. The call goes through the package's `Session`
    (``transport``: the wire unless given): one attempt, no redirect followed, the whole
    exchange within ``deadline`` seconds and the reply within `JOIN_REPLY_LIMIT` bytes.
    Every failure is a `JoinError`.
    """
    base = url.strip().rstrip("/")
    if not is_http_url(base):
        example = f"http://{base}" if "://" not in base else "http://192.168.1.20:8765"
        raise JoinError(
            f"{shorten(url)!r} is not a gateway's address: it starts with http:// or https://, "
            f"as on the board (e.g. {shorten(example)})"
        )
    sent: dict[str, str] = {"code": code, "name": name}
    earlier = load_joined()
    if earlier is not None and earlier["url"] == base:  # told only to the gateway that made it
        sent["previous"] = earlier["token"]  # a revoked one keeps this machine out
    reply = _post_join(base, sent, deadline, transport)
    body = _json_or_none(reply.body)
    if reply.status != 200 or not isinstance(body, dict) or "token" not in body:
        messages = error_messages(body)
        reason = messages[0] if messages else f"HTTP {reply.status}, not a gateway?"
        raise JoinError(f"could not join the workshop at {base}: {reason}",
                        status_code=reply.status, body=body, refusal=refusal_code(body))
    stored = {"url": base, "token": str(body["token"]), "name": str(body.get("name", name))}
    _write_private(config_path(), json.dumps(stored))
    return {"url": base, "name": stored["name"], "path": str(config_path())}


def _post_join(
    base: str, sent: dict[str, str], deadline: float, transport: Transport | None
) -> Reply:
    """``POST /join`` once, bounded; a failure on the way is a `JoinError` naming the fix."""
    session = Session(transport, user_agent=f"runway_widget/{__version__}", timeout=deadline)
    try:
        return session.call("POST", base + "/join", policy="once", deadline=deadline,
                            limit=JOIN_REPLY_LIMIT, json=sent)
    except (DeadlinePassed, ReadTimeout):
        raise JoinError(f"no complete answer from {base} within {deadline:g} s: check the "
                        "address with the instructor") from None
    except TransportError:  # refused, no such host, or a connection that broke at once
        raise JoinError(f"nothing answers at {base}: check the address and the port on the "
                        "board, and that the gateway is running") from None
    except ReplyTooLarge:
        raise JoinError(f"could not join the workshop at {base}: the reply is larger than a "
                        "gateway's, not a gateway?") from None
    finally:
        if transport is None:
            session.close()


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _same_backend(base_url: str | None, gateway_url: str) -> bool:
    return base_url is None or base_url.rstrip("/") == gateway_url.rstrip("/")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
