"""Upstream webhooks: with a public URL, the upstream pushes task updates to the gateway.

Only the gateway's own webhook URL and secret ever reach the upstream; pushes with another
secret are refused. Pushed updates go to the same tracker as polled ones (it dedups them).
"""

from __future__ import annotations

import hmac

from ..errors import ApiframeError
from ..models import RefusalCode, Task
from .handlers import ApiError, BaseApiHandler, Context

__all__ = ["UpstreamWebhookHandler"]


class UpstreamWebhookHandler(BaseApiHandler):
    """``POST /upstream-webhook`` with ``x-webhook-secret``: a task update from the upstream."""

    def initialize(self, context: Context, secret: str) -> None:  # type: ignore[override]
        super().initialize(context)
        self._secret = secret

    def post(self) -> None:
        given = self.request.headers.get("x-webhook-secret", "")
        if not self.context.public_url or not hmac.compare_digest(
            given.encode("utf-8", "replace"), self._secret.encode()
        ):
            raise ApiError(401, "invalid webhook secret", code=RefusalCode.UNAUTHORIZED)
        try:
            task = Task.from_json(self.json_body())
        except ApiframeError:
            raise ApiError(400, "not a task", code=RefusalCode.INVALID_REQUEST) from None
        self.context.workshop.push(task)
        self.reply({"ok": True})
