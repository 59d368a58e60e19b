"""The "show code" text: the same job as a plain ``requests`` call, safe to copy and share.

The key is always written as ``os.environ["APIFRAME_API_KEY"]`` and a webhook secret as
``os.environ["APIFRAME_WEBHOOK_SECRET"]``: the snippet never contains a real secret, so it can
be pasted into a notebook, an issue or a chat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..client.apiframe import DEFAULT_BASE_URL

SECRET_EXPR = 'os.environ["APIFRAME_WEBHOOK_SECRET"]'


def requests_snippet(
    payload: Mapping[str, Any], base_url: str | None = None, *, has_secret: bool = False
) -> str:
    """Python source that submits ``payload`` and polls it with ``requests``.

    ``payload`` should be a public payload (no secret); ``has_secret`` adds the secret field
    as an environment lookup.
    """
    base = (base_url or DEFAULT_BASE_URL).rstrip("/")
    fields = [
        f"        {key!r}: {value!r},"
        for key, value in payload.items()
        if key != "webhook_secret"
    ]
    if has_secret or "webhook_secret" in payload:
        fields.append(f'        "webhook_secret": {SECRET_EXPR},')
    body = "\n".join(fields)
    return f"""import os
import time

import requests

BASE_URL = {base!r}
HEADERS = {{
    "Authorization": os.environ["APIFRAME_API_KEY"],
    "Content-Type": "application/json",
}}

response = requests.post(
    f"{{BASE_URL}}/runway-imagine",
    headers=HEADERS,
    json={{
{body}
    }},
    timeout=30,
)
response.raise_for_status()
task_id = response.json()["task_id"]

while True:
    task = requests.post(
        f"{{BASE_URL}}/fetch", headers=HEADERS, json={{"task_id": task_id}}, timeout=30
    ).json()
    if task["status"] in ("finished", "failed"):
        break
    time.sleep(5)
print(task.get("video_url") or task.get("message"))
"""
