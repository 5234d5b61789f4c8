"""Copy a whole ledger from one store to another (a directory's ``events.jsonl``, a PostgreSQL database).

:func:`copy_ledger` goes through the event-store verbs only (``check``, ``head``, ``read``, ``append``), so
it copies between any two backends. The stored lines are copied byte for byte: seqs, times and hashes are
preserved, and the target holds the same hash chain as the source (``verify --expect-head`` with a head
kept from the source passes on the copy).

1. The source is checked first (:meth:`~ledger.backend.EventStore.check`: framing, crc, seq, the whole
   chain): damage raises :class:`~ledger.errors.CorruptLogError` and nothing is written.
2. An empty target gets everything. A non-empty target is accepted only if it is a prefix of the source: its
   own check passes and its head (seq and hash) is the source's record at that seq; the chain makes every
   line before it the same. Then the copy resumes after it (an interrupted copy is run again). Anything
   else raises :class:`CopyRefusedError` and nothing is written.
3. The records are appended in batches (:data:`BATCH` per append, each all or nothing); each append checks
   that the target's tip is still the one the copy left (else :class:`~ledger.errors.ConflictError`: another
   writer is using the target).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger.backend import GENESIS, Decide, EventStore, Head, Record
from ledger.errors import ConflictError, CorruptLogError, InvalidEntryError, LedgerError, NoLedgerError
from ledger.events import line_hash
from ledger.stores import check_store_spec, is_url, open_store, store_name

__all__ = ("BATCH", "CopyRefusedError", "CopyReport", "Progress", "copy_ledger", "follow_copy")

BATCH = 1000
"""Records per append."""

Progress = Callable[[int, int], None]
"""``progress(copied, total)``: records in the target so far (resumed ones included) and the source's."""


class CopyRefusedError(LedgerError):
    """The target of a copy holds records that are not a prefix of the source (another ledger, or one that
    went its own way): nothing was written. Copy into an empty store instead."""


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What :func:`copy_ledger` did."""

    copied: int
    """Records appended to the target by this call."""
    resumed: int
    """Records the target held already (a prefix of the source), left as they were."""
    head: Head
    """The target's head afterwards: the source's head as checked."""


def copy_ledger(
    source: EventStore | str | os.PathLike[str],
    target: EventStore | str | os.PathLike[str],
    *,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every record of ``source`` that ``target`` lacks, as the module's docstring says.

    Each is a store, or a spec :func:`~ledger.stores.open_store` opens (a directory or a URL): the source
    read-only, the target only once the source has passed its check (so a damaged source leaves no trace,
    not even a new directory), both closed at the end. Records appended to the source while the copy runs
    are not copied (run it again for them), and neither are records that are not durable (lines a writer
    died before fsyncing: readers do not show them either; the next writer on the source makes them so)."""
    if batch < 1:
        raise InvalidEntryError(f"batch must be at least 1, not {batch}")
    for spec in (source, target):
        if not isinstance(spec, EventStore):
            check_store_spec(spec)  # before anything is read
    with contextlib.ExitStack() as opened:
        src = _opened(source, opened, readonly=True)
        audit = src.check()
        ends = [GENESIS, *(b.end for b in audit)]  # one bookmark per batch: where reading can resume
        end = audit.end
        durable = src.head()  # the check also reads lines a writer died before fsyncing: not copied
        if durable.seq < end.seq:
            end = durable
        judged: Head | None = None
        if not isinstance(target, EventStore) and not is_url(target):
            # a directory is judged read-only first: opening it to write sets a torn tail aside, and a
            # refused target is left as it was
            try:
                with contextlib.closing(open_store(target, readonly=True)) as probe:
                    judged = _accepted(src, probe, ends, end, None)[0]
            except NoLedgerError:
                pass
        dst = _opened(target, opened, readonly=False)
        start, base = _accepted(src, dst, ends, end, judged)
        if progress is not None:
            progress(start.seq, end.seq)
        tip, copied = start, 0
        for records in _chunks(src, base, start.seq, end, batch):
            tip = dst.append(tip, _continue(tip, records))
            copied += len(records)
            if progress is not None:
                progress(tip.seq, end.seq)
        if (tip.seq, tip.hash) != (end.seq, end.hash):
            raise CorruptLogError(
                _where(src), end.seq, "the records read for the copy do not end at the head its check found"
            )
        return CopyReport(copied=copied, resumed=start.seq, head=tip)


def _accepted(
    src: EventStore, dst: EventStore, ends: list[Head], end: Head, judged: Head | None
) -> tuple[Head, Head]:
    """The target's head if the target is a prefix of the source up to ``end`` (else
    :class:`CopyRefusedError`), and the source's bookmark to read on from. ``judged``: a head of the
    target already found sound (its check is not run again)."""
    start = dst.head()
    if start.seq > end.seq:
        raise CopyRefusedError(
            f"{_where(dst)} holds {start.seq} records, the source {_where(src)} only {end.seq}: it is "
            "not a copy of the source; nothing was written"
        )
    base = ends[bisect.bisect_right([h.seq for h in ends], start.seq) - 1]
    if start.seq and _hash_at(src, base, start.seq) != start.hash:
        raise CopyRefusedError(
            f"{_where(dst)}: its record {start.seq} differs from the source's ({_where(src)}): it is "
            "another ledger or went its own way; nothing was written"
        )
    if start.seq and (judged is None or judged[:3] != start[:3]):
        for _ in dst.check():  # the prefix sound up to the head compared (damage: CorruptLogError)
            pass
    return start, base


def _opened(
    store: EventStore | str | os.PathLike[str], stack: contextlib.ExitStack, *, readonly: bool
) -> EventStore:
    if isinstance(store, EventStore):
        return store
    opened = open_store(store, readonly=readonly)
    stack.callback(opened.close)
    return opened


def _hash_at(source: EventStore, base: Head, seq: int) -> str | None:
    """The hash of the source's record ``seq`` (``base``: a place at or before it)."""
    if base.seq == seq:
        return base.hash
    for record in source.records(base):
        if record.seq == seq:
            return line_hash(record.line)
    return None


def _where(store: EventStore) -> Path:
    """How errors name a store (:func:`ledger.stores.store_name`)."""
    return store_name(store)


def _continue(expected: Head, records: list[Record]) -> Decide:
    def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
        if (tip.seq, tip.hash) != (expected.seq, expected.hash):
            raise ConflictError(
                f"the target changed during the copy: its head is record {tip.seq}, the copy left it at "
                f"{expected.seq}; another writer is using it"
            )
        return records

    return decide


def _chunks(source: EventStore, after: Head, skip: int, end: Head, size: int) -> Iterator[list[Record]]:
    """The source's records after ``after``, past ``skip`` and up to ``end``, ``size`` at a time, each
    checked to chain to the one before (the check ran in another pass: what is read now must be what it
    saw)."""
    pending: list[Record] = []
    prev: str | None = None
    for lines, events, _ in source.read(after):
        for line, event in zip(lines, events, strict=True):
            if event.seq > end.seq:
                break
            if event.seq <= skip:
                prev = line_hash(line)
                continue
            if prev is not None and event.prev != prev:
                raise CorruptLogError(
                    _where(source), event.seq, "chain broken: prev does not match the line before"
                )
            prev = line_hash(line)
            pending.append(Record(event.seq, line, event))
            if len(pending) == size:
                yield pending
                pending = []
        else:
            continue
        break
    if pending:
        yield pending


def follow_copy(
    source: EventStore | str | os.PathLike[str],
    target: EventStore | str | os.PathLike[str],
    stop: threading.Event,
    *,
    batch: int = BATCH,
    poll: float = 1.0,
    progress: Progress | None = None,
    copied: Callable[[Head], None] | None = None,
) -> CopyReport:
    """:func:`copy_ledger`, then keep ``target`` a current replica of ``source`` until ``stop`` is set:
    each record that becomes durable in the source is appended to the target (in appends of up to
    ``batch``), read through the source's ``read``, which checks it continues the records before it.
    ``copied(head)`` is called with the target's head after each append. Returns what was copied in all.

    Stopped at any moment, the target holds a prefix of the source, as after an interrupted copy: the same
    call (or a plain copy) resumes it."""
    with contextlib.ExitStack() as opened:
        src = _opened(source, opened, readonly=True)
        dst = _opened(target, opened, readonly=False)
        first = copy_ledger(src, dst, batch=batch, progress=progress)
        tip, total = first.head, first.copied
        at = src.at(tip)  # the same record where the source keeps it (its own bookmark)
        if at is None or at.hash != tip.hash:
            raise CorruptLogError(
                _where(src), tip.seq, "the source no longer holds the record the copy ended at"
            )
        while not stop.is_set():
            if not src.wait(tip.seq, poll):
                continue
            for lines, events, end in src.read(at):
                for i in range(0, len(events), batch):
                    records = list(map(Record, (e.seq for e in events[i : i + batch]), lines[i : i + batch],
                                       events[i : i + batch]))  # fmt: skip
                    tip = dst.append(tip, _continue(tip, records))
                    total += len(records)
                    if copied is not None:
                        copied(tip)
                at = end
        return CopyReport(copied=total, resumed=first.resumed, head=tip)
