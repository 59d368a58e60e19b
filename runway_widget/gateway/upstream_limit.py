"""How many jobs the gateway lets run upstream at once: stated, or learned as TCP learns.

A provider runs only so many jobs at once for one key and answers the rest "busy" (429, or
a 400/403 saying too many jobs are running). The instructor may state the limit
(``--upstream-concurrency N``); otherwise the gateway learns it, additive increase and
multiplicative decrease:

- it starts at `START` jobs and, until the first "busy", adds one for each submission the
  upstream takes (slow start: it grows with the answers, in seconds rather than job
  lengths), but never past one job more than those running: a window that was never used
  is not trusted at the next rush, and the limit is met by one submission, not a burst;
- a "busy" answer multiplies the window by `DECREASE`, and lowers it to the jobs the
  gateway had running then if that is less (the upstream ran no more than those: it may
  have finished some the gateway has not heard of yet, it never has more), once per
  round: an answer to a submission sent before the last decrease does not lower it again;
- after that, each job that ends while others wait adds ``1 / PROBE_JOBS``: one more job
  is tried after `PROBE_JOBS` jobs; each time that try meets the same limit again, the
  next waits twice as many jobs (a plan's limit does not move), and a lower limit starts
  the tries afresh. "Busy" answers stay few (one in `PROBE_JOBS` at most, fewer and fewer),
  and each sends its job back to the head of the queue: nobody sees it;
- the window grows only while jobs wait, so a quiet hour does not turn into a burst of
  refusals at the next rush.

A stated limit is used as it is until the upstream says "busy" anyway; from then on the
window (starting below the stated limit) rules, capped by it: a wrong statement is learned
downwards. Every "busy" also pauses all submissions, for the ``Retry-After`` the upstream
sent, else 1, 2, 4 … up to `MAX_PAUSE` seconds as they repeat; an upstream that cannot be
reached (503, a refused connection) pauses them the same way without lowering the window.

The state is one row of the database (see ``db.queue``), read and written under the lock
every claim takes, so processes sharing PostgreSQL learn, pause and count together.
Times are ``time.time()``: gateways on several hosts need their clocks in sync.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["DECREASE", "MAX_PAUSE", "PROBE_JOBS", "START", "UpstreamLimit"]

START = 2.0  # jobs at once before anything is known
DECREASE = 0.8  # the window after a "busy", as a fraction of the one that met it
PROBE_JOBS = 40.0  # jobs ended per extra slot tried, once the limit was met
MAX_PROBE_JOBS = 5000.0
MAX_WINDOW = 1000.0
FIRST_PAUSE = 1.0  # seconds, after a "busy" that said no Retry-After; doubled as they repeat
MAX_PAUSE = 60.0


@dataclass(frozen=True)
class UpstreamLimit:
    """The shared state: the learned window, and when submissions may go again."""

    window: float = START
    threshold: float | None = None  # None: no "busy" seen yet (slow start)
    paused_until: float = 0.0
    decreased_at: float = 0.0
    busy_streak: int = 0
    busy_total: int = 0
    probe_jobs: float = PROBE_JOBS  # jobs ended before the next slot is tried

    def slots(self, stated: int | None) -> int:
        """Jobs that may run upstream at once now."""
        return max(1, math.floor(self._current(stated) + 1e-9))  # sums of 1/n fall short

    def _current(self, stated: int | None) -> float:
        """The window in force: the stated limit until a "busy" said otherwise."""
        if stated is None:
            return self.window
        return float(stated) if self.threshold is None else min(self.window, float(stated))

    def ended(self, jobs: int, stated: int | None) -> UpstreamLimit:
        """``jobs`` ended upstream while others waited in the queue: once the limit was met,
        raise the window by a probe's share."""
        if self.threshold is None:
            return self
        return self._grown(jobs / self.probe_jobs, stated)

    def busy(
        self,
        sent_at: float,
        now: float,
        retry_after: float | None,
        stated: int | None,
        running: int,
    ) -> UpstreamLimit:
        """A submission sent at ``sent_at`` was answered "busy" at ``now``, with ``running``
        other jobs running upstream as far as the gateway knows."""
        changed = self._paused(now, retry_after)
        changed = dataclasses.replace(changed, busy_total=self.busy_total + 1)
        if sent_at < self.decreased_at:
            return changed  # this round was already answered
        window = max(1.0, min(DECREASE * self._current(stated), float(running)))
        same = self.threshold is not None and window > self.threshold - 0.5  # met again
        probe = min(MAX_PROBE_JOBS, 2 * self.probe_jobs) if same else PROBE_JOBS
        return dataclasses.replace(
            changed, window=window, threshold=window, decreased_at=now, probe_jobs=probe
        )

    def unreachable(self, now: float, retry_after: float | None) -> UpstreamLimit:
        """The upstream could not take anything (503, no connection): pause, learn nothing."""
        return self._paused(now, retry_after)

    def accepted(self, running: int, stated: int | None) -> UpstreamLimit:
        """A submission went through, ``running`` jobs upstream with it: the next "busy"
        starts its pauses at the first again; before the first "busy", one more slot."""
        changed = self if self.busy_streak == 0 else dataclasses.replace(self, busy_streak=0)
        if self.threshold is None:
            grown = min(self.window + 1.0, running + 1.0)
            return changed._grown(max(0.0, grown - self.window), stated)
        return changed

    def _grown(self, step: float, stated: int | None) -> UpstreamLimit:
        ceiling = MAX_WINDOW if stated is None else float(stated)
        return dataclasses.replace(self, window=min(ceiling, self.window + step))

    def _paused(self, now: float, retry_after: float | None) -> UpstreamLimit:
        if retry_after is None:
            pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** min(self.busy_streak, 16))
        else:
            pause = min(MAX_PAUSE, max(0.0, retry_after))
        return dataclasses.replace(
            self,
            paused_until=max(self.paused_until, now + pause),
            busy_streak=self.busy_streak + 1,
        )
