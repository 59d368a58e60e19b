"""When to poll a task next, predicted from the rate its percentage rises.

Polling on a fixed interval wastes requests in the long middle of a job and still
detects the finish late. A job's ``percentage`` rises roughly linearly, so a straight
line fitted to the (time, percentage) samples seen so far says when it should reach
100. `PollPlan` spends its polls where they pay: a couple early on (to learn the rate),
sparse checks in the middle while the prediction is still unsure (each one sharpens the
fit), and one just after the predicted finish, retried at short, widening gaps if the job
runs late. The same line gives the percentage to show between polls, so a progress bar
keeps moving.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..models import Task

__all__ = ["Line", "PollPlan", "ProgressFit", "Timing"]

# A status that is known to come before another never follows it.
STATUS_ORDER = {"staged": 0, "queued": 0, "pending": 0, "starting": 1, "processing": 2}


@dataclass(frozen=True)
class Timing:
    """Every knob of the schedule, in seconds (``middle`` is a fraction)."""

    min_interval: float = 0.5  # floor between scheduled polls of one task
    max_interval: float = 30.0  # ceiling: no task waits longer than this
    first_delay: float = 1.0  # first poll after track(): a burst of submissions shares it
    quiet_gap: float = 1.0  # before any progress: 1 s, then growing by ``growth``
    second_gap: float = 2.0  # after the first progress sample: soon, to learn the rate
    growth: float = 1.5  # widening of quiet gaps and of retries after a late finish
    near: float = 1.5  # closer than this to the predicted finish: aim at the finish itself
    margin: float = 0.1  # poll this long after the predicted finish (plus half its doubt)
    tolerance: float = 0.3  # a prediction this sure (standard error, s) is aimed at directly
    middle: float = 0.6  # in the long middle, check again after this share of the time left
    finish_pull: float = 0.3  # a finish poll may be pulled this much earlier to share a request
    sample_pull: float = 1.5  # any other poll at least this much (or half its gap)

    @classmethod
    def scaled(cls, min_interval: float, max_interval: float) -> Timing:
        """The default shape, with every early gap in proportion to ``min_interval``."""
        k = min_interval / cls.min_interval
        return cls(
            min_interval=min_interval,
            max_interval=max_interval,
            first_delay=cls.first_delay * k,
            quiet_gap=cls.quiet_gap * k,
            second_gap=cls.second_gap * k,
            near=cls.near * k,
            sample_pull=cls.sample_pull * k,
        )


@dataclass(frozen=True)
class Line:
    """A fitted ``percentage = mean_p + slope * (t - mean_t)``, with its standard errors."""

    slope: float
    mean_t: float
    mean_p: float
    sigma_mean: float  # standard error of the line at mean_t, in percent
    sigma_slope: float  # standard error of the slope, in percent per second
    span: float  # seconds between the first and the last sample

    def value_at(self, t: float) -> float:
        return self.mean_p + self.slope * (t - self.mean_t)

    def time_of(self, pct: float) -> float:
        return self.mean_t + (pct - self.mean_p) / self.slope

    def sigma_time_of(self, pct: float) -> float:
        """How uncertain `time_of` is, in seconds."""
        rise = pct - self.mean_p
        return math.hypot(self.sigma_mean / self.slope, rise * self.sigma_slope / self.slope**2)


class ProgressFit:
    """A least-squares line through the (time, percentage) samples of one running task."""

    QUANTUM_VARIANCE = 1 / 12  # percentages come as whole numbers

    def __init__(self, size: int = 48) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=size)
        self._line: Line | None = None  # cached: bars ask for it every half second

    def add(self, t: float, task: Task) -> None:
        pct = task.percentage
        if task.is_done or pct is None or pct <= 0:
            return
        self._points.append((t, float(pct)))
        self._line = self._fit()

    @property
    def samples(self) -> int:
        return len(self._points)

    def line(self) -> Line | None:
        """The fitted line once the samples show a clear rise, else None."""
        return self._line

    def _fit(self) -> Line | None:
        points = self._points
        if len(points) < 2:
            return None
        (t0, p0), (t1, p1) = points[0], points[-1]
        if t1 - t0 < 0.5 or p1 - p0 < 2:
            return None
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_p = sum(p for _, p in points) / n
        sxx = sum((t - mean_t) ** 2 for t, _ in points)
        sxy = sum((t - mean_t) * (p - mean_p) for t, p in points)
        if sxx <= 0 or sxy <= 0:
            return None
        slope = sxy / sxx
        residual = sum((p - mean_p - slope * (t - mean_t)) ** 2 for t, p in points)
        variance = max(residual / (n - 2) if n > 2 else 0.0, self.QUANTUM_VARIANCE)
        return Line(
            slope=slope,
            mean_t=mean_t,
            mean_p=mean_p,
            sigma_mean=math.sqrt(variance / n),
            sigma_slope=math.sqrt(variance / sxx),
            span=t1 - t0,
        )

    def value_at(self, t: float) -> float | None:
        """The percentage the task has probably reached at ``t``; None while the rate is unknown."""
        line = self.line()
        return line.value_at(t) if line is not None else None


class PollPlan:
    """The polling schedule of one task: when it is next due, and how firmly."""

    def __init__(self, timing: Timing, now: float) -> None:
        self.timing = timing
        self.fit = ProgressFit()
        self.due = now + timing.first_delay
        self.kind = "first"  # first | quiet | sample | finish | watch
        self.last_poll: float | None = None
        self.quiet_polls = 0
        self.misses = 0
        self.pushed = False

    def pull_window(self) -> float:
        """How much earlier than due this task may ride along in another task's request."""
        t = self.timing
        if self.kind == "finish":
            return t.finish_pull
        gap = self.due - self.last_poll if self.last_poll is not None else t.first_delay
        return max(t.sample_pull, 0.5 * gap)

    def polled(self, now: float, task: Task, *, on_time: bool, stale: bool = False) -> None:
        """Plan the next poll after ``task`` came back at ``now``.

        ``on_time`` is False when the task only rode along in another task's request: a
        finish poll pulled early that finds the task unfinished is not a miss. A ``stale``
        reply (older than what is known) is no sample of the rate.
        """
        self.last_poll = now
        if not stale:
            self.fit.add(now, task)
        if task.is_done:
            return
        t = self.timing
        line = self.fit.line()
        if self.pushed:
            delay, kind = t.max_interval, "watch"
        elif line is not None:
            finish, doubt = line.time_of(100.0), line.sigma_time_of(100.0)
            remaining = finish - now
            sure = doubt <= t.tolerance and remaining <= max(t.near, line.span)
            if remaining > t.near:
                self.misses = 0
            elif on_time and self.kind == "finish":
                self.misses += 1
            if remaining > t.near and not sure:
                delay, kind = t.middle * remaining, "sample"
            else:
                retry = t.min_interval * t.growth ** max(0, self.misses - 1)
                delay, kind = max(remaining + t.margin + doubt / 2, retry), "finish"
        elif self.fit.samples:
            delay, kind = t.second_gap * t.growth ** max(0, self.fit.samples - 1), "sample"
        else:
            delay, kind = t.quiet_gap * t.growth**self.quiet_polls, "quiet"
            self.quiet_polls += 1
        if delay > t.max_interval:
            delay, kind = t.max_interval, "sample"
        self.due = now + max(t.min_interval, delay)
        self.kind = kind

    def pushed_update(self, now: float, task: Task) -> None:
        """A webhook delivered ``task``: from now on, polls are only a rare safety net."""
        self.fit.add(now, task)
        self.pushed = True
        self.kind = "watch"
        self.due = max(self.due, now + self.timing.max_interval)

    def estimate(self, now: float) -> float | None:
        """The percentage to show at ``now`` (unclamped), or None while unknown."""
        return self.fit.value_at(now)
