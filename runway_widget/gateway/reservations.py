"""Reservations in batches: the submissions that arrive together share one transaction.

A room pressing Generate together sends a hundred submissions within milliseconds, and each
one's answer needs only its reservation (see ``workshop``). What a reservation costs is its
commit (an fsync on SQLite, a flush of the log on PostgreSQL) and, with several threads
writing, the wait for the database's lock (SQLite's busy handler sleeps 1, 2, 5, 10 … ms
between tries). So reservations go to one thread, which takes every one waiting and makes
them in one transaction (`Ledger.reserve_many`): each quota check is still its own
conditional ``UPDATE``, in order, seeing the ones before it; only the commit is shared.

Should the database refuse a batch, each of its reservations is tried again in a transaction
of its own, so no submission fails for another's. A batch's answers reach the event loop in
one callback: one wake-up for the batch, not one per reservation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence

from ..errors import ServerError
from .db.ledger import Ledger, Reservation, Wanted

__all__ = ["BATCH", "Reservations"]

Asked = tuple[Wanted, "asyncio.Future[Reservation]"]
Outcome = Reservation | BaseException

logger = logging.getLogger("runway_widget.gateway")

BATCH = 200  # reservations in one transaction at most


class Reservations:
    """One writer thread making the reservations asked for, as many at a time as wait."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._ready = threading.Condition()
        self._waiting: list[Asked] = []
        self._closed = False
        self._making = False
        self._thread = threading.Thread(
            target=self._run, name="gateway-reservations", daemon=True
        )
        self._thread.start()

    async def reserve(self, wanted: Wanted) -> Reservation:
        """The reservation (raises `QuotaRefused`, or what the database raised)."""
        future: asyncio.Future[Reservation] = asyncio.get_running_loop().create_future()
        with self._ready:
            if self._closed:
                raise ServerError("the gateway is stopping: try again shortly", status_code=503)
            self._waiting.append((wanted, future))
            self._ready.notify()
        return await future

    @property
    def busy(self) -> bool:
        """Reservations are waiting or being made (a room is pressing Generate)."""
        return self._making or bool(self._waiting)

    def close(self) -> None:
        """Make what was asked for, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
                self._making = True
            try:
                self._make(batch)
            finally:
                self._making = False

    def _make(self, batch: list[Asked]) -> None:
        _answer(batch, self._outcomes([wanted for wanted, _future in batch]))

    def _outcomes(self, wanted: list[Wanted]) -> Sequence[Outcome]:
        try:
            return self._ledger.reserve_many(wanted)
        except Exception as exc:
            if len(wanted) > 1:  # one at a time: a refusal fails only its own
                return [outcome for one in wanted for outcome in self._outcomes([one])]
            logger.exception("a reservation failed")
            return [exc]


def _answer(batch: list[Asked], outcomes: Sequence[Outcome]) -> None:
    """Settle the batch's futures on their event loop, in one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Reservation], Outcome]]]
    by_loop = {}
    for (_wanted, future), outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits these now
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Reservation], Outcome]]) -> None:
    for future, outcome in settled:
        if future.done():  # the caller went away (its request was cut)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
