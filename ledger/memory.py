"""The in-memory event store: the reference implementation of :class:`~ledger.backend.EventStore`.

Everything it holds is gone with the process; "durable" means "appended under the lock". It checks what
it is asked to append (framing, crc, seq, chain, time order), which the file backend leaves to its callers
for speed, so the contract tests (``tests/contract.py``) catch a caller that breaks the rules here first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from ledger.backend import (
    GENESIS,
    Audit,
    Batch,
    Decide,
    EventStore,
    Head,
    Record,
    check_continues,
    checked_event,
)
from ledger.errors import CorruptLogError, LedgerClosedError, StaleHeadError
from ledger.events import GENESIS_HASH, EventType, line_hash

__all__ = ("MemoryLog", "MemoryStore")

_BATCH = 4096
_WHERE = Path("<memory>")


class MemoryLog:
    """The records one or more :class:`MemoryStore` handles share (a stand-in for one file or database)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.events: list[EventType] = []
        self.hashes: list[str] = []
        self.changed = threading.Condition()


class MemoryStore(EventStore):
    """A handle on ``log`` (a new, empty one by default)."""

    def __init__(self, log: MemoryLog | None = None) -> None:
        self.log = log or MemoryLog()
        self._closed = False

    def head(self) -> Head:
        log = self.log
        with log.changed:
            n = len(log.lines)
            return GENESIS if not n else Head(n, log.hashes[-1], log.events[-1].ts, n)

    def read(self, after: Head = GENESIS) -> Iterator[Batch]:
        log = self.log
        with log.changed:  # as of the call
            end = len(log.lines)
        start = after.seq
        if start > end:
            raise StaleHeadError(f"{_WHERE} holds {end} records, not record {start}: read from the start")
        if start and start < end and log.events[start].prev != after.hash:
            raise CorruptLogError(_WHERE, start + 1, "chain broken: prev does not match the line before")
        return (self._batch(low, min(low + _BATCH, end)) for low in range(start, end, _BATCH))

    def at(self, head: Head) -> Head | None:
        if head.seq <= 0:
            return GENESIS
        log = self.log
        with log.changed:
            if head.seq > len(log.lines):
                return None
            return Head(head.seq, log.hashes[head.seq - 1], log.events[head.seq - 1].ts, head.seq)

    def _batch(self, low: int, high: int) -> Batch:
        log = self.log
        return Batch(
            log.lines[low:high],
            log.events[low:high],
            Head(high, log.hashes[high - 1], log.events[high - 1].ts, high),
        )

    def append(self, after: Head, decide: Decide) -> Head:
        if self._closed:
            raise LedgerClosedError("this store handle was closed")
        log = self.log
        with log.changed:
            n = len(log.lines)
            if after.seq > n or (after.seq and log.hashes[after.seq - 1] != after.hash):
                raise CorruptLogError(_WHERE, after.seq, "the store does not hold the head appended after")
            tip = GENESIS if not n else Head(n, log.hashes[-1], log.events[-1].ts, n)
            records = decide(tip, [Record(i + 1, log.lines[i], log.events[i]) for i in range(after.seq, n)])
            if not records:
                return tip
            end = check_continues(records, tip)
            hashes = [line_hash(r.line) for r in records]
            log.lines.extend(r.line for r in records)
            log.events.extend(r.event for r in records)
            log.hashes.extend(hashes)
            log.changed.notify_all()
            return end

    def wait(self, after_seq: int, timeout: float) -> bool:
        log = self.log
        with log.changed:
            return log.changed.wait_for(lambda: len(log.lines) > after_seq, timeout)

    def check(self) -> Audit:
        return _MemoryAudit(self.log)

    def newest_first(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        log = self.log
        with log.changed:  # as of the call
            end = len(log.lines)
        return ((log.lines[i], log.events[i]) for i in range(end - 1, -1, -1))

    def close(self) -> None:
        self._closed = True


class _MemoryAudit(Audit):
    def __init__(self, log: MemoryLog) -> None:
        self._log = log

    def __iter__(self) -> Iterator[Batch]:
        log = self._log
        with log.changed:
            lines = list(log.lines)
        prev, seq, ts = GENESIS_HASH, 0, ""
        batch: tuple[list[bytes], list[EventType]] = ([], [])
        for line in lines:
            n = seq + 1
            event = checked_event(_WHERE, n, line, prev)
            batch[0].append(line)
            batch[1].append(event)
            seq, prev, ts = n, line_hash(line), event.ts
            self.end = Head(seq, prev, ts, seq)
            if len(batch[0]) == _BATCH:
                yield Batch(*batch, self.end)
                batch = ([], [])
        if batch[0]:
            yield Batch(*batch, self.end)
