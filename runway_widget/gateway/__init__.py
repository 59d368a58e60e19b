"""The workshop gateway: one real APIFRAME key, many participants, each with a quota.

A tornado service that speaks the APIFRAME API to participants (their personal token as
``Authorization``) and forwards to the upstream with the real key, which never leaves it.
Built on the client and `TaskTracker`; neither knows about it. Modules:

- ``database``: tables and engine (SQLite WAL by default, PostgreSQL by URL)
- ``tokens``: random tokens, stored hashed, compared in constant time
- ``roster``: participants, their tokens, how they join; ``join_codes``: codes kept, closed,
  rotated, and personal ones; ``participant_controls``: quota, give back, revoke, restore;
  ``room_report``: the report ``/admin`` and ``gateway report`` share
- ``ledger``: quota reserve/settle and job states; ``reservations``: those that arrive
  together in one transaction
- ``queue`` (in ``db``): the jobs waiting for the upstream, their fair order, claims under
  the shared limit (``limit_row``); ``upstream_limit``: the limit, stated or learned (AIMD);
  ``dispatcher``: sends queued jobs when a slot frees and judges the answers
- ``auth``: the `ParticipantAuth` seam (token mode); ``hub_auth``: JupyterHub mode, with
  quotas from ``room_config``; ``browser_login``: the same for browsers (a cookie)
- ``upstream``: the one client to APIFRAME or the demo backend, in a bounded pool
- ``workshop``: one poller for everyone, answers from state; ``submissions``: reserved at
  once, queued, cancelled while they wait
- ``videos``: each clip fetched once, served with Range
- ``push``: upstream webhooks; ``participant_webhooks``: participants' webhooks
- ``pages``, ``gallery``, ``admin``, ``report``: ``/``, the live ``/gallery``, the instructor's
  ``/admin`` and the report's formats; ``export``: every clip as one zip
- ``ratelimit``, ``handlers``, ``app``: the HTTP server; ``cli``: ``runway-widget gateway``, with
  ``startup`` (``serve``: checks first, then the banner; ``addresses``: where a room reaches it)
  and ``room_commands`` (tokens, codes, ``roster import`` from ``roster_file``, clips, report)
- ``connections``: connection slots shared out per client address; ``proxies``: whose
  ``X-Forwarded-For`` counts; ``log_redaction``: no ``token=`` in any log line

Importing this package is light; the server's dependencies load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["GatewayServer", "Limits", "Participant", "ParticipantAuth"]

_LAZY = {
    "GatewayServer": "runway_widget.gateway.app",
    "Limits": "runway_widget.gateway.db.roster",
    "Participant": "runway_widget.gateway.db.roster",
    "ParticipantAuth": "runway_widget.gateway.auth",
}

if TYPE_CHECKING:
    from .app import GatewayServer
    from .auth import ParticipantAuth
    from .db.roster import Limits, Participant


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runway_widget.gateway' has no attribute {name!r}")
