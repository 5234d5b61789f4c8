"""The event-store interface: what a storage backend of the ledger implements.

A store holds the log: a sequence of records, each an event's line exactly as the file format frames it
(``docs/format.md``: JSON, then ``,"crc":"…"}``, no newline), numbered ``seq`` 1, 2, 3 … without gaps, and
chained: each line's ``prev`` is the SHA-256 (hex) of the line before it (:data:`GENESIS_HASH` for the first).
The layers above (the store API, the projector) see only seqs, heads and lines; locks, offsets, staging,
fsyncs and repair live behind these verbs. ``tests/contract.py`` states the contract as tests; every
backend runs it (:mod:`ledger.log` the file, :mod:`ledger.memory` the reference in memory).

- :meth:`EventStore.head`: the last durable record's seq, hash and time.
- :meth:`EventStore.read`: the durable records after a head, in order, in batches.
- :meth:`EventStore.at`: where a record the caller remembers (a checkpoint's) is, as the store holds it.
- :meth:`EventStore.append`: plan and write under the store's lock, all or nothing, durable on return.
- :meth:`EventStore.wait`: block until a record after a seq is durable, or a timeout.
- :meth:`EventStore.check`: every record, its framing, crc, seq and chain checked; damage named at its line.
- :meth:`EventStore.newest_first`: the durable records newest first, read from the end (``history --last``).
- :meth:`EventStore.close`.

Why ``append`` takes a ``decide`` callback rather than an expected head: the file backend commits in groups
(one fsync for the lines of every writer that arrived while the previous fsync was in flight), so a writer
must plan against lines other writers staged whose fsync is not done yet. Those lines are no head anyone
could name in advance: an expected-head check would fail for every writer in a group but the first. So the
store runs the plan under its lock and hands it everything after the head the caller knows, durable or
staged; the caller's new records continue that. A SQL backend does the same in one transaction under a
lock (``SELECT … WHERE seq > after`` then ``INSERT``). If the staged lines a plan saw are lost before
their fsync (another writer's fsync failed), the plan was made against a state that never existed:
:class:`~ledger.errors.ConflictError`, nothing written, read and plan again.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import msgspec

from ledger.errors import CorruptLogError, InvalidEntryError
from ledger.events import GENESIS_HASH, EventType, check_line, decode_event, line_hash

__all__ = (
    "GENESIS",
    "Audit",
    "Batch",
    "Decide",
    "EventStore",
    "Head",
    "Progress",
    "Record",
    "TornTail",
    "check_continues",
    "checked_event",
    "counted_down",
    "reported",
)


class Head(NamedTuple):
    """A place in the log: after the record ``seq`` (0: before the first)."""

    seq: int = 0
    hash: str = GENESIS_HASH
    """SHA-256 (hex) of record ``seq``'s line: what the next line's ``prev`` must be."""
    ts: str = ""
    """Record ``seq``'s time: the next record's is never earlier."""
    at: int = 0
    """The backend's own bookmark for this place (the file backend: the byte offset after the line; 0:
    none). A hint only: the layers above carry it (the checkpoint keeps it) and never interpret it; a
    backend checks it before it trusts it."""


GENESIS = Head()


class Record(NamedTuple):
    """One record: its ``seq``, its line exactly as stored (no newline) and the event decoded from it."""

    seq: int
    line: bytes
    event: EventType


class Batch(NamedTuple):
    """Consecutive records as :meth:`EventStore.read` yields them: ``lines[i]`` is ``events[i]``'s line.
    (Batches, not records one by one: a fold takes a whole batch in C-level loops.)"""

    lines: list[bytes]
    events: list[EventType]
    end: Head
    """The place after the batch's last record (bookmark included): read on from there."""


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at the end of a store that do not form whole records (a crash cut an append short). Not
    damage: they were never acknowledged, and the next append sets them aside."""

    offset: int
    """Where they start, in the backend's terms (the file backend: a byte offset)."""
    size: int
    line: int
    """1-based line (= the seq they would have had) where they start."""


Decide = Callable[[Head, Sequence[Record]], Sequence[Record]]
"""``decide(tip, unseen)``: run by :meth:`EventStore.append` under the store's lock. ``unseen`` are the
records after the caller's head up to ``tip``, durable or staged by other writers (they are durable before
``append`` returns, or it raises). Returns the records to append: seqs ``tip.seq + 1 …``, the first line's
``prev`` is ``tip.hash``, each next one's the hash of the line before, times never before ``tip.ts``. An
empty sequence appends nothing. If it raises, nothing is appended and ``append`` re-raises it. A store may
run it more than once: first on the caller's head with nothing unseen, without the lock, and again under
the lock when that head turned out not to be the tip (:mod:`ledger.postgres`); only the last run's records
land, and only the last run's error is raised."""


Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: how far a long call (a whole read of the log, an import) has got: records
read (or entries checked) so far, of ``total`` when it is known. Called as it goes, once per batch or so;
the library reports, a caller (the command line) decides whether and how to show it."""


def reported(runs: Iterable[list[EventType]], progress: Progress | None) -> Iterator[list[EventType]]:
    """``runs`` of events read from the start of a log, as they come, ``progress`` told after each how
    many records have been read (the last one's ``seq``)."""
    if progress is None:
        yield from runs
        return
    for run in runs:
        yield run
        if run:
            progress(run[-1].seq, None)


class Audit(abc.ABC):
    """What :meth:`EventStore.check` returns: iterate it for the batches (checked); a damaged record raises
    :class:`~ledger.errors.CorruptLogError` naming its line. After the iteration, :attr:`end` is the place
    after the last sound record and :attr:`torn` the torn tail, if any (reported, not an error)."""

    end: Head = GENESIS
    torn: TornTail | None = None

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...


class EventStore(abc.ABC):
    """A backend of the ledger. One handle serves one thread at a time; handles in other threads and
    processes on the same store may append and read at once (the store serialises appends)."""

    @abc.abstractmethod
    def head(self) -> Head:
        """The place after the last durable record (:data:`GENESIS` for an empty store)."""

    @abc.abstractmethod
    def read(self, after: Head = GENESIS) -> Iterator[Batch]:
        """The durable records after ``after``, in order, in batches, as of the call: a record whose
        append has not returned (or whose durability is not certain) is never yielded. ``after`` is a
        head this store gave out (``after.seq == 0``: from the start). If the record after it does not
        chain to it (``prev != after.hash``), :class:`~ledger.errors.CorruptLogError` is raised there;
        if the store does not hold ``after`` at all (fewer records; the file backend: its file was replaced
        since this handle gave ``after`` out), :class:`~ledger.errors.StaleHeadError`: read from the start.
        Reading stops silently before a torn tail (:meth:`check` reports it)."""

    @abc.abstractmethod
    def at(self, head: Head) -> Head | None:
        """The place after record ``head.seq`` as this store holds it (its hash, time and bookmark), found
        through the bookmark ``head.at`` where the backend uses one (and checked there); ``None`` if the
        store holds no record ``head.seq``. :data:`GENESIS` for ``head.seq == 0``. What a checkpoint is
        checked against: it is trusted when ``at(h)[:3] == h[:3]``. Reads whatever the store holds, durable
        or not (a comparison, never shown to a reader)."""

    @abc.abstractmethod
    def append(self, after: Head, decide: Decide) -> Head:
        """Under the store's lock, run ``decide`` (:data:`Decide`) on the records after ``after`` and append
        what it returns, all or nothing; return once every record it was shown and every record it
        returned is durable. Returns the place after the last of them (``after`` itself if none).

        Raises what ``decide`` raises (nothing appended; still only once what it was shown is settled),
        :class:`~ledger.errors.ConflictError` when what it was shown was lost and it appended nothing (plan
        again), :class:`~ledger.errors.LedgerIOError` when nothing of its records was recorded, and
        :class:`~ledger.errors.DurabilityError` when the store cannot tell (a failed fsync: the handle then
        refuses further appends)."""

    @abc.abstractmethod
    def wait(self, after_seq: int, timeout: float) -> bool:
        """Block until a record after ``after_seq`` is durable (``True``: at once if one is), or until
        ``timeout`` seconds have passed without one (``False``)."""

    @abc.abstractmethod
    def check(self) -> Audit:
        """Read every record checking its framing, crc, ``seq`` and the whole chain (what ``verify`` needs
        from the store); see :class:`Audit`. Changes nothing."""

    @abc.abstractmethod
    def newest_first(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        """The durable records' lines and events, newest first, read from the end of the store as the
        caller takes them (the last few cost a few reads, never the whole log). As of the call, like
        :meth:`read`; each line checked as :meth:`read` checks it (framing, crc, ``seq``, and the chain
        where consecutive records are read), damage raised as
        :class:`~ledger.errors.CorruptLogError` at its line once the reader gets there. A store that can
        find one entry's records without reading the others (``spot_id`` and ``era_id`` both given) may
        give only those, as :meth:`lines_of` does; the caller filters what it gets."""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of what this handle holds open. The data stays."""

    # -- conveniences built on the verbs -------------------------------------------------------------

    def records(self, after: Head = GENESIS) -> Iterator[Record]:
        """:meth:`read`, one :class:`Record` at a time."""
        for lines, events, _ in self.read(after):
            yield from map(Record, (e.seq for e in events), lines, events)

    def events(self, after: Head = GENESIS) -> Iterator[EventType]:
        """:meth:`read`, the events only."""
        return itertools.chain.from_iterable(batch.events for batch in self.read(after))

    def lines_of(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        """Every record's line and event in log order, where a store that can find one entry's records
        without reading the others (``spot_id`` and ``era_id`` both given) may give only those; the caller
        filters what it gets. Each line is checked as :meth:`read` checks it."""
        for lines, events, _ in self.read():
            yield from zip(lines, events, strict=True)


def checked_event(where: Path, n: int, line: bytes, prev: str | None = None) -> EventType:
    """Record ``n``'s event from its stored ``line``, checked as :meth:`EventStore.check` checks a record:
    framing and crc, decoding, ``seq``, and (given ``prev``, the hash of the line before) the chain. A
    failure raises :class:`~ledger.errors.CorruptLogError` naming line ``n`` of ``where``."""
    if b"\n" in line or not check_line(line):
        raise CorruptLogError(where, n, "damaged line (bad framing or crc)")
    try:
        event = decode_event(line)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        raise CorruptLogError(where, n, f"undecodable event: {exc}") from None
    if event.seq != n:
        raise CorruptLogError(where, n, f"seq is {event.seq}, expected {n}")
    if prev is not None and event.prev != prev:
        raise CorruptLogError(where, n, "chain broken: prev does not match the line before")
    return event


def counted_down(where: Path, lines: Iterable[bytes], top: int) -> Iterator[tuple[bytes, EventType]]:
    """Records ``top``, ``top - 1`` … 1 from their ``lines`` given newest first (a store read backward),
    each checked by :func:`checked_event` as a forward reader checks it: record ``n`` is yielded once
    record ``n - 1``'s line is read, whose hash its ``prev`` must be (record 1's: the genesis hash). Fewer
    lines than ``top`` is a missing start: :class:`~ledger.errors.CorruptLogError` at line 1."""
    n, later = top, None
    for line in lines:
        if later is not None:
            try:
                event = checked_event(where, n, later, line_hash(line))
            except CorruptLogError:
                checked_event(where, n - 1, line)  # a damaged line breaks the next one's chain: named first
                raise
            yield later, event
            n -= 1
        later = line
        if n == 1:
            break
    if later is not None:
        event = checked_event(where, n, later, GENESIS_HASH if n == 1 else None)
        if n != 1:
            raise CorruptLogError(where, 1, f"seq is {n}, expected 1")
        yield later, event


def check_continues(records: Sequence[Record], tip: Head) -> Head:
    """Refuse records that do not continue the log after ``tip`` (the caller's bug: each line one framed
    line with a valid crc holding its event, seqs ``tip.seq + 1 …``, each ``prev`` the hash of the line
    before, times never going back) with :class:`~ledger.errors.InvalidEntryError`. Returns the place after
    the last of them (no bookmark)."""
    seq, prev, ts = tip.seq, tip.hash, tip.ts
    for record in records:
        line, event, want = record.line, record.event, seq + 1
        why = None
        if b"\n" in line or not check_line(line):
            why = "its line is not one framed line with a valid crc"
        elif record.seq != want or event.seq != want:
            why = f"its seq is {record.seq}, expected {want}"
        elif event.prev != prev:
            why = "its prev is not the hash of the line before"
        elif event.ts < ts:
            why = f"its time {event.ts} is before the last record's {ts}"
        elif decode_event(line) != event:
            why = "its event is not the one its line holds"
        if why is not None:
            raise InvalidEntryError(f"cannot append record {record.seq}: {why}")
        seq, prev, ts = want, line_hash(line), event.ts
    return Head(seq, prev, ts, seq)
