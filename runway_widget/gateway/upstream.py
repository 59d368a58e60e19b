"""The one upstream the gateway forwards to: APIFRAME with the real key, or the demo backend.

Client calls block (requests under the hood), so they run in a bounded thread pool, never
on the event loop; a slow upstream ties up at most ``workers`` threads, never the server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..client.apiframe import ApiframeClient
from ..errors import AuthenticationError
from ..store import JobStore

__all__ = ["UPSTREAM_KEY_ENV", "Upstream"]

UPSTREAM_KEY_ENV = "APIFRAME_API_KEY"
WORKERS = 8
UPSTREAM_TIMEOUT = 20.0  # under a participant's own 30 s, so they hear how a submit ended
UPSTREAM_RATE = 10.0  # reads per second for the whole room; the poller batches 20 tasks a read

T = TypeVar("T")


class Upstream:
    """An `ApiframeClient` for the gateway's own use, and the pool its calls run in."""

    def __init__(self, client: ApiframeClient, *, demo: Any = None, workers: int = WORKERS) -> None:
        self.client = client
        self._demo = demo
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway-upstream")

    @classmethod
    def open(cls, spec: str | None, home: Path, **client_options: Any) -> Upstream:
        """``"demo"``: a demo backend started here; else the URL (default APIFRAME) with
        the key from ``APIFRAME_API_KEY``, which is never taken from a flag."""
        store = JobStore(home / "gateway-upstream-jobs.jsonl")
        options = {
            "requests_per_second": UPSTREAM_RATE,
            "timeout": UPSTREAM_TIMEOUT,
            **client_options,
        }
        if spec == "demo":
            from ..demo import DemoServer

            demo = DemoServer().start()
            client = ApiframeClient(demo.api_key, demo.base_url, store=store, **options)
            return cls(client, demo=demo)
        key = os.environ.get(UPSTREAM_KEY_ENV)
        if not key:
            raise AuthenticationError(
                f"the gateway needs the upstream key in {UPSTREAM_KEY_ENV} "
                "(or --upstream demo for a rehearsal)"
            )
        return cls(ApiframeClient(key, spec or None, store=store, **options))

    @property
    def is_demo(self) -> bool:
        return self._demo is not None

    @property
    def demo(self) -> Any:
        """The embedded demo backend, when the upstream is one (tests inject faults there)."""
        return self._demo

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The bounded pool upstream calls (and clip downloads) run in."""
        return self._pool

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking client call in the pool and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
        if self._demo is not None:
            self._demo.stop()

    def __repr__(self) -> str:
        return f"Upstream({self.client!r})"
