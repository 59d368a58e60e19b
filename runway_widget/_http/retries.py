"""When a call is tried again, and how long it waits first.

Reads (``"read"``) retry 429, 5xx and every failure on the wire. A submission costs credits
and has no idempotency key, so ``"submit"`` retries only when the server certainly did not
take it: 429, 503, or a connection that never opened. ``"once"`` is for a caller that
schedules its own retries (the tracker) or must not repeat itself (a webhook push).

Waits are full jitter (a uniform draw up to the exponential cap), which spreads the retries
of many clients that failed together, unless the server said ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

from .transport import TransportError

__all__ = ["RETRY_AFTER_CEILING", "RetryPolicy", "parse_retry_after", "retry_policy"]

READ_RETRY_STATUSES = frozenset([429, *range(500, 600)])
SUBMIT_RETRY_STATUSES = frozenset([429, 503])
RETRY_AFTER_CEILING = 24 * 3600.0  # a longer hint is nonsense; treated as absent


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries, after which replies and failures, and the backoff between them."""

    retries: int
    statuses: frozenset[int]
    unsent_only: bool  # retry a failure only when the request never left
    backoff_factor: float
    backoff_max: float

    def retries_failure(self, exc: TransportError) -> bool:
        return not (self.unsent_only and exc.sent)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row."""
        if failures <= 0:
            return 0.0
        cap = min(self.backoff_max, self.backoff_factor * 2 ** min(failures - 1, 64))
        return random.uniform(0.0, cap)


def retry_policy(
    kind: str, *, max_retries: int, backoff_factor: float, backoff_max: float
) -> RetryPolicy:
    """The policy for ``kind``: ``read``, ``submit`` or ``once``."""
    if kind == "once":
        return RetryPolicy(0, frozenset(), True, 0.0, 0.0)
    statuses = READ_RETRY_STATUSES if kind == "read" else SUBMIT_RETRY_STATUSES
    return RetryPolicy(max_retries, statuses, kind == "submit", backoff_factor, backoff_max)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` (seconds or an HTTP date); None if absent or absurd."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not seconds <= RETRY_AFTER_CEILING:  # also NaN
        return None
    return max(0.0, seconds)
