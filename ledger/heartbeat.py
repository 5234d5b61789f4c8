"""The heartbeat: a thread that renews a running attempt's lease while its block runs.

A lease of ``L`` seconds is renewed every ``L / 3``: an attempt that is alive adds one ``renewed`` event per
third of its lease (a 60 s lease: 180 events an hour, about 40 KB of log), and a renewal that is late by up
to two thirds of the lease still lands before the lease runs out. The thread stops when the block ends,
before the block's last event is recorded, and at once when the attempt is no longer the entry's current
one (it was reaped or taken over: the renewal is refused and nothing is recorded).
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Protocol

from ledger.errors import IllegalTransitionError, LedgerError

__all__ = ("RENEW_FRACTION", "Heartbeat")

log = logging.getLogger("ledger")

RENEW_FRACTION = 1 / 3
"""A lease is renewed when this part of it has passed."""


class _Renewer(Protocol):
    def heartbeat(self, spot_id: str, era_id: str, attempt: int, *, lease: float | None = None) -> object: ...


class _Attempt(Protocol):
    spot_id: str
    era_id: str
    attempt: int


class Heartbeat:
    """``with Heartbeat(ledger, job, lease): ...`` renews ``job``'s lease every third of ``lease`` seconds
    until the block ends."""

    def __init__(self, ledger: _Renewer, job: _Attempt, lease: float) -> None:
        self.ledger, self.job, self.lease = ledger, job, lease
        self.renewals = 0
        self.lost: str | None = None
        """Why renewing stopped before the block ended (the attempt is no longer current), if it did."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat {job.spot_id}/{job.era_id}#{job.attempt}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        job = self.job
        while not self._stop.wait(self.lease * RENEW_FRACTION):
            try:
                self.ledger.heartbeat(job.spot_id, job.era_id, job.attempt, lease=self.lease)
                self.renewals += 1
            except IllegalTransitionError as exc:
                self.lost = str(exc)
                log.warning(
                    "%s/%s attempt %d: lease not renewed: %s", job.spot_id, job.era_id, job.attempt, exc
                )
                return
            except LedgerError as exc:  # a full disk, a lost connection: tried again at the next beat
                log.warning(
                    "%s/%s attempt %d: lease renewal failed: %s", job.spot_id, job.era_id, job.attempt, exc
                )
