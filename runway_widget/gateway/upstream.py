"""The one upstream the gateway forwards to: APIFRAME with the real key, or the demo backend.

Client calls block (requests under the hood), so they run in a bounded `Lane` of their own,
never on the event loop and never behind clip copies or webhook pushes: a slow upstream ties
up at most ``workers`` threads, and a full queue is refused at once (503, nothing reserved
or sent) instead of growing without bound.

Submissions go through `Upstream.submitter`, a client that never retries one itself: a
"busy" answer goes back to the gateway's queue (see ``dispatcher``), which learns the
upstream's limit from it and keeps the job's place, rather than to a retry that sleeps in
a worker and tells nobody.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

from .._http.deadlines import DeadlinePassed
from .._http.outbound import OutboundPolicy, OutboundRefused, outbound_transport
from .._http.session import ReplyTooLarge, UnwantedStatus
from .._http.transport import TransportError
from .._version import __version__
from ..client.apiframe import ApiframeClient
from ..errors import AuthenticationError, ServerError, shorten
from ..store import JobStore
from .lanes import Lane, LaneFull

__all__ = ["UPSTREAM_KEY_ENV", "Upstream", "demo_inputs_fetch"]

UPSTREAM_KEY_ENV = "APIFRAME_API_KEY"
WORKERS = 8
WAITING = 512  # submissions queued behind busy workers: a whole room submitting at once
UPSTREAM_TIMEOUT = 20.0  # under a participant's own 30 s, so they hear how a submit ended
UPSTREAM_RATE = 10.0  # reads per second for the whole room; the poller batches 20 tasks a read
INPUT_SECONDS = 15.0  # a demo input's first byte, and its base time
INPUT_MIN_RATE = 256 * 1024  # bytes a second a demo input must average after that
STOP_GRACE = 1.0  # seconds running upstream calls get to finish when the gateway stops

T = TypeVar("T")


class Upstream:
    """An `ApiframeClient` for the gateway's own use, and the lane its calls run in."""

    def __init__(
        self,
        client: ApiframeClient,
        *,
        demo: Any = None,
        workers: int = WORKERS,
        waiting: int = WAITING,
    ) -> None:
        self.client = client
        self.submitter = ApiframeClient(
            client.api_key,
            client.base_url,
            client.timeout,
            store=client.store,
            max_retries=0,
            deadline=client.deadline,
            demo=client.is_demo,
        )
        self._demo = demo
        self._lane = Lane("gateway-upstream", workers, waiting)

    @classmethod
    def open(
        cls,
        spec: str | None,
        home: Path,
        *,
        policy: OutboundPolicy | None = None,
        demo_concurrency: int | None = None,
        **client_options: Any,
    ) -> Upstream:
        """``"demo"``: a demo backend started here, fetching participants' inputs under
        ``policy`` and running at most ``demo_concurrency`` jobs at once (None: any number);
        else the URL (default APIFRAME) with the key from ``APIFRAME_API_KEY``, which is
        never taken from a flag."""
        store = JobStore(home / "gateway-upstream-jobs.jsonl")
        options = {
            "requests_per_second": UPSTREAM_RATE,
            "timeout": UPSTREAM_TIMEOUT,
            **client_options,
        }
        if spec == "demo":
            from ..demo import DemoServer

            demo = DemoServer(
                fetch=demo_inputs_fetch(policy or OutboundPolicy()), concurrency=demo_concurrency
            ).start()
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
    def waiting(self) -> int:
        """Calls queued for a free worker."""
        return self._lane.waiting

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking client call in the upstream lane and await its result.

        A full lane raises `ServerError` 503 before ``call`` ran: nothing was sent.
        """
        try:
            return await self._lane.run(call, *args)
        except LaneFull:
            raise ServerError("the gateway is busy: try again shortly", status_code=503) from None

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """Run a blocking call in the upstream lane; `LaneFull` at once if it has no room."""
        return self._lane.submit(call, *args)

    def close(self) -> None:
        self._lane.close(STOP_GRACE)
        self.client.close()
        self.submitter.close()
        if self._demo is not None:
            self._demo.stop()

    def __repr__(self) -> str:
        return f"Upstream({self.client!r})"


def demo_inputs_fetch(policy: OutboundPolicy) -> Callable[[str, IO[bytes], int], None]:
    """How the embedded demo fetches a participant's ``image_url``/``video_url``: under the
    outbound rule, within a deadline and the demo's size cap. Raises the demo's `InputError`."""
    from ..demo.renderer import InputError

    def fetch(url: str, sink: IO[bytes], cap: int) -> None:
        transport = outbound_transport(
            policy, user_agent=f"runway_widget-gateway/{__version__}", timeout=INPUT_SECONDS
        )
        try:
            transport.download(
                url, sink, limit=cap, base_seconds=INPUT_SECONDS, min_rate=INPUT_MIN_RATE
            )
        except OutboundRefused as exc:
            raise InputError(f"{shorten(url, 120)}: {exc}") from None
        except UnwantedStatus as exc:
            raise InputError(f"{shorten(url, 120)} answered {exc}") from None
        except (TransportError, DeadlinePassed, ReplyTooLarge) as exc:
            raise InputError(f"could not load {shorten(url, 120)} ({exc})") from None
        finally:
            transport.close()

    return fetch
