"""What one gateway process tells Prometheus, with ``prometheus_client``, on ``/metrics``.

Counters count since this process started (Prometheus sums them over replicas with
``sum()``); gauges are read at each scrape. The lanes' queues and the poll lag are this
replica's own; the clip store is the folder every replica shares, so each reports the same
size (take ``max()``, not ``sum()``). Names start with ``runway_gateway_``; no label ever
holds a participant, a task or a URL, so the series stay few.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..client.budget import RequestBudget
    from ..models import Task
    from ..store import JobStore
    from ..tracking.board import TaskSource

__all__ = ["CONTENT_TYPE", "Meter", "MeteredSource"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "runway_gateway_"
# a gauge's reading: one value, or one per tuple of label values
Reading = float | Mapping[tuple[str, ...], float]


class Meter:
    """The process's registry and the counters the gateway's parts add to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Counter(
            PREFIX + "submissions",
            "Submissions the upstream accepted (a task id handed to a participant)",
            registry=self.registry,
        )
        self.refusals = Counter(
            PREFIX + "refusals",
            "Requests refused, by the refusal code the participant was sent",
            ["code"],
            registry=self.registry,
        )
        self.upstream_requests = Counter(
            PREFIX + "upstream_requests",
            "Calls to the upstream (submit, poll, upload) and clip copies from it",
            ["call"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            PREFIX + "upstream_errors",
            "Calls to the upstream that failed, by call and kind of error",
            ["call", "error"],
            registry=self.registry,
        )
        self._gauges = _Gauges()
        self.registry.register(self._gauges)

    @contextlib.contextmanager
    def upstream(self, call: str) -> Iterator[None]:
        """Count one upstream call around the block, and its failure if it raises."""
        self.upstream_requests.labels(call).inc()
        try:
            yield
        except Exception as exc:
            self.upstream_errors.labels(call, type(exc).__name__).inc()
            raise

    def refused(self, code: str) -> None:
        self.refusals.labels(code).inc()

    def gauge(
        self, name: str, documentation: str, read: Callable[[], Reading], labels: Sequence[str] = ()
    ) -> None:
        """A gauge read at each scrape: ``read()`` gives its value, or values by labels."""
        self._gauges.add(PREFIX + name, documentation, read, tuple(labels))

    def exposition(self) -> bytes:
        """The text a scrape receives (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _Gauges(Collector):
    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, Callable[[], Reading], tuple[str, ...]]] = []

    def add(
        self, name: str, documentation: str, read: Callable[[], Reading], labels: tuple[str, ...]
    ) -> None:
        self._gauges.append((name, documentation, read, labels))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, read, labels in self._gauges:
            reading = read()
            if isinstance(reading, Mapping):
                family = GaugeMetricFamily(name, documentation, labels=list(labels))
                for values, value in reading.items():
                    family.add_metric(list(values), value)
            else:
                family = GaugeMetricFamily(name, documentation, value=reading)
            yield family


class MeteredSource:
    """The upstream client as the gateway's poller sees it: each poll counted, and when each
    followed task was last asked about (for the poll lag)."""

    def __init__(
        self, client: TaskSource, meter: Meter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self._meter = meter
        self._clock = clock
        self._asked: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def read_budget(self) -> RequestBudget:
        return self._client.read_budget

    @property
    def store(self) -> JobStore:
        return self._client.store

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def fetch_batch(self, ids: list[str], *, retry: bool = True) -> dict[str, Task]:
        with self._meter.upstream("poll"):
            replies = self._client.fetch_batch(ids, retry=retry)
        now = self._clock()
        with self._lock:
            self._asked.update(dict.fromkeys(ids, now))
        return replies

    def following(self, task_id: str) -> None:
        """``task_id`` is followed from now on: its wait for a poll starts."""
        with self._lock:
            self._asked.setdefault(task_id, self._clock())

    def lag(self, followed: Sequence[str]) -> float:
        """Seconds the longest waiting of the ``followed`` tasks has gone without a poll."""
        now = self._clock()
        with self._lock:
            self._asked = {task_id: self._asked.get(task_id, now) for task_id in followed}
            oldest = min(self._asked.values(), default=now)
        return max(0.0, now - oldest)
