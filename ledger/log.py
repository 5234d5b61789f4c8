"""The append-only log file ``events.jsonl``: append, read, recover a torn tail, verify the chain.

:class:`EventLog` is the file backend of the event-store interface (:mod:`ledger.backend`): the layers
above use its verbs only (``head``, ``read``, ``at``, ``append``, ``wait``, ``check``, ``close``); locks,
the staging file, the fsynced-size record, torn-tail repair (:meth:`EventLog.recover`, run by a handle's
first append) and byte offsets (a :class:`~ledger.backend.Head`'s bookmark) live here only.

Reading yields only lines that are whole (newline-terminated, crc valid) and in sequence, and stops
before anything else at the end.

Writing is a group commit across processes, with two ``flock`` locks:

- the *queue lock* (``events.jsonl.lock``) orders writers: under it a writer reads what others appended
  (to the log and to the staging file ``events.jsonl.staged``), checks its change against that, and either
  writes its lines to the log itself (when no fsync is in flight and no other writer is about) or appends
  them to the staging file;
- the *sync lock* (``events.jsonl.sync.lock``) is held by the one writer that writes to the log and fsyncs it
  (the leader). A writer that staged waits for it; then either a leader's fsync already covered its lines
  (it returns at once) or it becomes the leader, moves everything staged into the log with one write, and
  fsyncs once for all of them. The file records how far the log is known to be fsynced.

So the log only ever grows by one leader's single write followed by its fsync: at most one unsynced write
is in flight, as with one writer. Readers take the sync lock shared and read up to the fsynced size on
record, so they never take in a line whose fsync is not done (not even one a leader that died before its
fsync left). A crash can only tear bytes beyond that size: damage before it is corruption. The staging
file is scratch: it is validated line by line (crc, ``seq``, chain) before anything in it is moved, and
whatever does not continue the log is dropped (its writer was never told it was recorded).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import logging
import operator
import os
import stat
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from ledger.backend import GENESIS, Audit, Batch, Decide, EventStore, Head, Record, TornTail
from ledger.errors import (
    ConflictError,
    CorruptLogError,
    DurabilityError,
    LedgerIOError,
    StaleHeadError,
    io_error,
    symlink_refused,
)
from ledger.events import (
    FORMAT_VERSION,
    GENESIS_HASH,
    MAX_LINE_BYTES,
    EventType,
    check_line,
    check_lines,
    decode_event,
    decode_events,
    line_hash,
    line_hashes,
)
from ledger.fileops import TEMP_MARK, FileLock, FileOps, OwnedFd, atomic_write, file_kind

__all__ = ("START", "EventLog", "Position", "Scan", "Ticket", "TornTail")

log = logging.getLogger("ledger")

_CHUNK: Final = 1 << 20
_FEW: Final = 16
"""Runs of fewer lines than this are read one line at a time (the checks over a whole run cost more)."""
_second = operator.itemgetter(1)
_seq_of = operator.attrgetter("seq")
_version_of = operator.attrgetter("v")
_prev_of = operator.attrgetter("prev")
_EVENT_START: Final = b'{"type":'
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
# events.jsonl.sync.lock holds one record: magic, the log size known to be fsynced, crc-32 of the two.
_FLUSHED = struct.Struct("<8sQ")
_FLUSHED_MAGIC: Final = b"VLSYNC01"
_GATHER_MAX: Final = 0.005
"""The longest a writer pauses for other writers to stage (s)."""
_GATHER_FROM: Final = 0.001
"""Writers pause for each other only where an fsync takes at least this long (s): below it the pause and
the extra staging cost about what the shared fsync saves (docs/performance.md)."""


class Position(NamedTuple):
    """How far a reader has got: the end of the last whole line it accepted. (A named tuple: one is made
    per commit, and a tuple is the cheapest immutable value to make.)"""

    offset: int = 0
    """Bytes of the log up to and including that line's newline."""
    seq: int = 0
    """Its ``seq`` (0 before the first event)."""
    last_hash: str = GENESIS_HASH
    """Its chain hash: what the next line's ``prev`` must be."""
    last_ts: str = ""
    """Its ``ts``: the next event's ``ts`` is never earlier."""


START: Final = Position()


class Ticket(NamedTuple):
    """A writer's place in a group commit (:meth:`EventLog.submit`): what must be durable before it may
    return."""

    end: Position
    """The end of its last line (or of what it read, when it wrote nothing)."""
    leader: bool
    """It holds the sync lock and wrote to the log itself: it fsyncs."""
    start: int = 0
    """Where the leader's write began: what the log is cut back to if its fsync fails."""
    line: bytes = b""
    """Its last line (newline excluded), ``b""`` when it wrote nothing: what the log must hold just before
    ``end``."""
    gather: bool = False
    """It staged though no fsync may have been in flight, other writers being about: it waits a moment
    for them to stage too before it waits for the sync lock (:meth:`EventLog.settle`)."""


class Scan:
    """Iterates over the events after ``start``; afterwards ``end`` and ``torn`` say where it stopped.

    With ``chain=True`` every line's ``prev`` is checked against the SHA-256 of the line before (what
    ``verify`` does); otherwise each line's crc and ``seq`` are checked, and ``prev`` only where the scan
    joins the part already read. A damaged line followed by a whole one raises :class:`CorruptLogError`;
    damaged bytes at the very end are reported in ``torn`` and not yielded, unless they start inside the
    part of the log known to be fsynced (:meth:`EventLog.fsynced_part`): a crash cannot tear what was
    fsynced, so that is corruption too. With ``limit`` the scan reads no further than that offset (a line
    boundary: :meth:`EventLog.durable_end`; a limit inside a line is another file's record, so the scan
    fsyncs the log and reads on). With ``fd`` it reads through that descriptor of the log (a writer's,
    kept open), which it leaves open, instead of opening the log.
    """

    def __init__(
        self, log: EventLog, start: Position, *, chain: bool, limit: int | None = None, fd: int | None = None
    ) -> None:
        self._log = log
        self.start = start
        self.end = start
        self.torn: TornTail | None = None
        self._chain = chain
        self._limit = limit
        self._fd = fd

    def __iter__(self) -> Iterator[EventType]:
        return itertools.chain.from_iterable(map(_second, self.runs()))

    def records(self) -> Iterator[tuple[bytes, EventType]]:
        """The events with their lines exactly as stored (newline excluded)."""
        for lines, events in self.runs():
            yield from zip(lines, events, strict=True)

    def runs(self) -> Iterator[tuple[list[bytes], list[EventType]]]:
        """The events in runs, one per chunk of the file read, each with its lines exactly as stored
        (newline excluded). ``end`` is set once the scan stops (after the last run, or at a problem).

        A run whose lines are all whole, decode to one event each and continue ``seq`` (and, with
        ``chain``, the chain) is checked and decoded in C-level loops over the whole run. Any other run is
        read again one line at a time, which finds the exact line and reason of the first problem; the
        events before it are yielded first, as a line-by-line reader would have.
        """
        log = self._log
        path = log.path
        fd = self._fd
        if fd is None:
            try:
                fd = log.ops.open_regular(path, os.O_RDONLY | log.nofollow)
            except FileNotFoundError:
                if self.start.offset:
                    raise CorruptLogError(path, self.start.seq, "the log file is missing") from None
                return
            except OSError as exc:
                raise io_error("read", path, exc) from None
        offset, seq, ts = self.start.offset, self.start.seq, self.start.last_ts
        last_hash: str | None = self.start.last_hash  # the chain hash of the last line read, where known
        last_line = b""
        read_at = offset
        pending = b""
        limit = self._limit
        try:
            while True:
                want = _CHUNK if limit is None else min(_CHUNK, limit - read_at)
                if want <= 0:
                    if not pending:
                        break
                    # The record ends inside a line, where this log's never does: it came with another
                    # file and says nothing. Read on, fsynced first, as where there is no record.
                    log.fsync_for_reader(fd)
                    limit = None
                    continue
                try:
                    chunk = log.ops.pread(fd, want, read_at)
                except OSError as exc:
                    raise io_error("read", path, exc) from None
                if not chunk:
                    break
                read_at += len(chunk)
                data = pending + chunk if pending else chunk
                lines = data.split(b"\n")
                pending = lines.pop()
                if not lines:
                    continue
                whole = len(data) - len(pending)
                fast = (  # a few lines (a writer or watcher catching up) cost less one at a time
                    None
                    if len(lines) < _FEW
                    else self._fast_run(data, whole, lines, seq, last_hash or line_hash(last_line))
                )
                if fast is not None:
                    events, last_hash = fast
                    offset += whole
                    seq, ts, last_line = events[-1].seq, events[-1].ts, lines[-1]
                    yield lines, events
                    continue
                # One line at a time: the first problem's exact line and reason.
                events, failure, damaged = [], None, False
                for line in lines:
                    if not check_line(line):  # framing and crc: the line checks itself
                        damaged = True
                        break
                    try:
                        event = decode_event(line)
                    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
                        failure = CorruptLogError(path, seq + 1, f"undecodable event: {exc}")
                        break
                    failure = self._misfit(event, seq, last_hash, last_line)
                    if failure is not None:
                        break
                    events.append(event)
                    last_line, last_hash = line, None
                    offset += len(line) + 1
                    seq, ts = event.seq, event.ts
                if events:
                    yield lines[: len(events)], events
                if failure is not None:
                    raise failure
                if damaged:
                    self._stop_at_bad_line(fd, offset, seq + 1, "damaged line (bad framing or crc)")
                    return
            if pending:
                self._torn_tail(fd, offset, len(pending), seq + 1, "a line without its newline")
        finally:
            if self._fd is None:
                log.ops.close(fd)
            if last_line:
                self.end = Position(offset, seq, last_hash or line_hash(last_line), ts)

    def _fast_run(
        self, data: bytes, whole: int, lines: list[bytes], seq: int, prev: str
    ) -> tuple[list[EventType], str | None] | None:
        """The events of ``lines`` (the first ``whole`` bytes of ``data``), which follow event ``seq`` whose
        line hashes to ``prev``, and the last line's chain hash where it was computed (with ``chain``); or
        ``None`` unless every line is whole, decodes to one event, continues ``seq`` and passes the chain
        checks."""
        if not check_lines(lines):
            return None
        try:
            events = decode_events(memoryview(data)[:whole])
        except (msgspec.MsgspecError, UnicodeDecodeError):
            return None
        if (
            len(events) != len(lines)
            or list(map(_seq_of, events)) != list(range(seq + 1, seq + 1 + len(events)))
            or max(map(_version_of, events)) > FORMAT_VERSION
        ):
            return None
        # where the scan joins what it read before (only there unless the whole chain is checked)
        if (self._chain or seq == self.start.seq) and events[0].prev != prev:
            return None
        if not self._chain:
            return events, None
        hashes = line_hashes(lines)
        if list(map(_prev_of, itertools.islice(events, 1, None))) != hashes[:-1]:
            return None
        return events, hashes[-1]

    def _misfit(
        self, event: EventType, seq: int, last_hash: str | None, last_line: bytes
    ) -> CorruptLogError | None:
        """Why ``event`` cannot follow the line read before it (event ``seq``, ``last_line``, whose chain
        hash is ``last_hash`` where known), if it cannot."""
        path = self._log.path
        if event.seq != seq + 1:
            return CorruptLogError(path, seq + 1, f"seq is {event.seq}, expected {seq + 1}")
        if event.v > FORMAT_VERSION:
            return CorruptLogError(
                path, seq + 1, f"format version {event.v} is newer than this code ({FORMAT_VERSION})"
            )
        if (self._chain or not last_line) and event.prev != (last_hash or line_hash(last_line)):
            return CorruptLogError(path, seq + 1, "chain broken: prev does not match the line before")
        return None

    def _stop_at_bad_line(self, fd: int, bad_offset: int, line_no: int, reason: str) -> None:
        """A damaged line: corruption if a whole event follows it anywhere (on a later line, or on the same
        line after a lost newline), else a torn tail."""
        try:
            tail = self._log.ops.pread(fd, os.fstat(fd).st_size - bad_offset, bad_offset)
        except OSError as exc:
            raise io_error("read", self._log.path, exc) from None
        pieces = tail.split(b"\n")
        for i, line in enumerate(pieces[1:-1], start=1):
            if check_line(line):
                raise CorruptLogError(
                    self._log.path, line_no, f"{reason}, followed by a valid line (line {line_no + i})"
                )
        bad = pieces[0]
        start = bad.find(_EVENT_START, 1)
        while start != -1:
            if len(pieces) > 1 and check_line(bad[start:]):
                raise CorruptLogError(
                    self._log.path,
                    line_no,
                    f"{reason}, and a whole event follows on the same line (lost newline)",
                )
            start = bad.find(_EVENT_START, start + 1)
        self._torn_tail(fd, bad_offset, len(tail), line_no, reason)

    def _torn_tail(self, fd: int, offset: int, size: int, line_no: int, reason: str) -> None:
        """Bytes from ``offset`` to the end that are not whole events: a torn tail if they lie beyond what
        is known to be fsynced; else the fsynced part itself is damaged, which no crash does (unless a
        reader without the lock caught a write in progress that is whole and fsynced by now: it stops
        before it)."""
        try:
            fsynced = self._log.fsynced_part(os.fstat(fd).st_size)
            now = self._log.ops.pread(fd, fsynced - offset, offset) if offset < fsynced else b""
        except OSError as exc:
            raise io_error("read", self._log.path, exc) from None
        if offset < fsynced:
            if now.endswith(b"\n") and all(map(check_line, now.split(b"\n")[:-1])):
                return
            raise CorruptLogError(
                self._log.path,
                line_no,
                f"{reason} inside the part of the log known to be fsynced (its first {fsynced} bytes): "
                "damage, not a torn tail",
            )
        self.torn = TornTail(offset, size, line_no)


def _head(pos: Position) -> Head:
    return Head(pos.seq, pos.last_hash, pos.last_ts, pos.offset)


class _FileAudit(Audit):
    """:meth:`EventLog.check`: the whole log, every line's chain checked."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._scan = Scan(log, START, chain=True)

    def __iter__(self) -> Iterator[Batch]:
        scan = self._scan
        offset = 0
        identity = self._log.stat()[0]
        try:
            for lines, events in scan.runs():
                offset += sum(map(len, lines)) + len(lines)
                yield Batch(lines, events, Head(events[-1].seq, line_hash(lines[-1]), events[-1].ts, offset))
        finally:
            self.end, self.torn = _head(scan.end), scan.torn
        self._log.note_read(identity, scan.end)  # read to the end: the next head() reads on from there


def _decode_record(data: bytes) -> int | None:
    """The fsynced size in the record ``data`` (events.jsonl.sync.lock), ``None`` unless it is intact."""
    if len(data) != _FLUSHED.size + 4 or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        return None
    magic, flushed = _FLUSHED.unpack(data[:-4])
    return int(flushed) if magic == _FLUSHED_MAGIC else None


class EventLog(EventStore):
    """``events.jsonl``, its staging file and its two lock files: the file backend of the ledger."""

    def __init__(self, path: Path, ops: FileOps, *, follow_symlinks: bool = False) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.sync_path = path.with_name(path.name + ".sync.lock")
        self.staged_path = path.with_name(path.name + ".staged")
        self.ops = ops
        self.nofollow = 0 if follow_symlinks else _NOFOLLOW
        self._fd = OwnedFd(self)
        self._staged_fd = OwnedFd(self)
        self._sync_fd = OwnedFd(self)
        self._record_fd = OwnedFd(self)
        self._read_fd = OwnedFd(self)
        """The log open for reading, for the write path (kept open: a writer reads the log at every
        commit that follows another writer's)."""
        self._read_id: tuple[int, int] | None = None
        """The (device, inode) ``_read_fd`` is open on."""
        self._lock = FileLock(ops, self.lock_path)
        self._sync = FileLock(ops, self.sync_path)
        self._crowd = False
        """Other writers are about: this handle's last commit shared an fsync with another writer's, or
        another writer wrote since. Then a commit stages its lines even when no fsync is in flight
        (:meth:`submit`)."""
        self._fsync_time = 0.0
        """How long this handle's last fsync of the log took (s)."""
        self._batch = 0
        """How many lines this handle's last move of staged lines carried."""
        self.log_end = START
        """Where the log file ends, as the last :meth:`read_staged` found it (under the queue lock)."""
        self.staged = b""
        """The staged lines that continue the log, as the last :meth:`read_staged` found them."""
        self._staged_size = 0
        self._known = START
        """The durable end :meth:`head` last found (it reads on from there)."""
        self._known_identity: tuple[int, int] | None = None
        self._fd_identity: tuple[int, int] | None = None
        """The log file (device, inode) :attr:`_fd` was opened on: :meth:`append` reopens it when the path
        names another file (the log was replaced), so no line goes to an unlinked file."""
        self._seen: tuple[int, int] | None = None
        """The log file (device, inode) the heads this handle gave out are in (:meth:`read`, :meth:`at` and
        :meth:`append` raise :class:`StaleHeadError` for a head given out in another)."""
        self._recovered = False
        """:meth:`recover` ran: a handle's first append runs it first."""

    # -- the event-store interface (ledger.backend) ------------------------------------------------------

    def head(self) -> Head:
        with self.reading():
            identity, size = self.stat()
            known = self._known if identity == self._known_identity and self._known.offset <= size else START
            scan = Scan(self, known, chain=False, limit=self.durable_end(known.offset, size))
            for _ in scan.runs():
                pass
        self._known, self._known_identity = scan.end, identity
        return _head(scan.end)

    def read(self, after: Head = GENESIS) -> Iterator[Batch]:
        identity, size = self.stat()
        if after.seq and ((self._seen is not None and identity != self._seen) or after.at > size):
            raise StaleHeadError(
                f"{self.path} no longer holds event {after.seq} where this handle read it (the log was "
                "replaced or cut short): read it again"
            )
        self._seen = identity
        if after.at == size and (after.at or not after.seq):  # nothing after it: one stat, no lock
            return iter(())
        start = Position(after.at, after.seq, after.hash, after.ts) if after.at or not after.seq else START
        with self.reading():  # how far is fsynced; what is fsynced stays, so it is read after letting go
            scan = Scan(self, start, chain=False, limit=self.durable_end(start.offset, size))
        return self._batches(scan, after)

    def _batches(self, scan: Scan, after: Head) -> Iterator[Batch]:
        skip = after.seq - scan.start.seq  # records before ``after`` (none when its bookmark was used)
        join = skip > 0  # the first record yielded must chain to ``after`` (the scan checked it otherwise)
        offset = scan.start.offset
        for lines, events in scan.runs():
            offset += sum(map(len, lines)) + len(lines)
            if skip >= len(events):
                skip -= len(events)
                continue
            if join:
                if events[skip].prev != after.hash:
                    raise CorruptLogError(
                        self.path, after.seq + 1, "chain broken: prev does not match the line before"
                    )
                lines, events, skip, join = lines[skip:], events[skip:], 0, False
            yield Batch(lines, events, Head(events[-1].seq, line_hash(lines[-1]), events[-1].ts, offset))
        if skip:
            raise StaleHeadError(f"{self.path} holds fewer than {after.seq} events: read it again")

    def at(self, head: Head) -> Head | None:
        if head.seq <= 0:
            return GENESIS
        identity, size = self.stat()
        if 0 < head.at <= size:  # the bookmark: the line that ends there, if it is record ``head.seq``
            found = self.position_at(head.at)
            if found is not None and found.seq == head.seq:
                self._seen = identity
                return _head(found)
        # no bookmark (a checkpoint another backend wrote), or a wrong one: look for the record
        scan = Scan(self, START, chain=False)
        offset = 0
        try:
            for lines, events in scan.runs():
                if events[-1].seq >= head.seq:
                    i = head.seq - events[0].seq
                    offset += sum(map(len, lines[: i + 1])) + i + 1
                    self._seen = identity
                    return Head(head.seq, line_hash(lines[i]), events[i].ts, offset)
                offset += sum(map(len, lines)) + len(lines)
        except CorruptLogError:
            return None  # not soundly held: a reader's replay names the damage
        return None

    def append(self, after: Head, decide: Decide) -> Head:
        if not self._recovered:  # the first append: as a leader, make the log ready for writing
            self.recover()
        error: BaseException | None = None
        records: Sequence[Record] = ()
        ticket: Ticket | None
        lock = self._lock  # the queue lock (:meth:`locked`), taken and let go without a context manager
        lock.acquire()
        try:
            start = Position(after.at, after.seq, after.hash, after.ts)
            unseen: list[Record] = []
            identity, size = self.stat()
            if identity != self._seen and self._seen is not None:
                self._seen = None
                raise StaleHeadError(f"{self.path} was replaced since this handle read it: read it again")
            self._seen = identity
            if identity != self._read_id:
                self._read_fd.close()  # the log was replaced (or not read yet): read the one in place
            if identity != self._fd_identity and self._fd_identity is not None:
                self._fd.close()  # opened on a log since replaced: write to the one in place
                self._fd_identity = None
            if size < start.offset:
                raise StaleHeadError(
                    f"{self.path} no longer holds event {after.seq} where this handle read it (the log was "
                    "replaced or cut short): read it again"
                )
            if size != start.offset:  # including lines a leader that died before its fsync left
                self._crowd = True
                # up to the size just seen: the log does not grow while the queue lock is held
                scan = Scan(self, start, chain=False, limit=size, fd=self._log_fd())
                for lines, events in scan.runs():
                    unseen.extend(map(Record, map(_seq_of, events), lines, events))
                if scan.torn is not None:
                    self.repair(scan.torn)
                start = scan.end
            staged = self.read_staged(start)
            if staged:
                self._crowd = True
                unseen.extend(Record(event.seq, line, event) for line, event in staged)
                line, event = staged[-1]
                start = Position(start.offset + len(self.staged), event.seq, line_hash(line), event.ts)
            try:
                records = decide(Head(start.seq, start.last_hash, start.last_ts, start.offset), unseen)
            except BaseException as exc:  # nothing is written; what was read must still be fsynced
                error, records = exc, ()
            if records:
                last = records[-1]
                data = b"\n".join([r.line for r in records]) + b"\n"
                end = Position(start.offset + len(data), last.seq, line_hash(last.line), last.event.ts)
                ticket = self.submit(data, end, last.line)
            else:
                data, end = b"", start
                # nothing shown, nothing to write: nothing to make durable (the caller read up to ``after``)
                ticket = self.submit(data, end) if unseen else None
        finally:
            lock.release()
        if ticket is not None and not self.settle(ticket):
            if records:
                raise LedgerIOError(
                    f"cannot append to {self.path}: the group commit that carried event {end.seq} failed "
                    "in another writer; the event was not recorded"
                )
            if error is None:
                raise ConflictError(
                    f"{self.path}: the lines staged before this commit were not recorded (another writer's "
                    "commit failed): read again"
                )
        if error is not None:
            raise error
        return Head(end.seq, end.last_hash, end.last_ts, end.offset)

    def wait(self, after_seq: int, timeout: float) -> bool:
        import watchfiles  # only a waiter needs it

        deadline = time.monotonic() + timeout
        if self.head().seq > after_seq:
            return True
        name = self.path.name
        for _ in watchfiles.watch(
            self.path.parent,
            watch_filter=lambda change, path: os.path.basename(path) == name,
            debounce=50,
            step=5,
            rust_timeout=max(1, min(100, int(timeout * 1000))),
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=False,
        ):
            if self.head().seq > after_seq:
                return True
            if time.monotonic() >= deadline:
                return False
        return self.head().seq > after_seq

    def check(self) -> Audit:
        return _FileAudit(self)

    def note_read(self, identity: tuple[int, int] | None, end: Position) -> None:
        """A whole pass over the log file ``identity`` (:meth:`check`) read whole lines to ``end``: keep the
        durable position at or before it as where :meth:`head` reads on from, so that a fresh handle's
        first head does not read the whole log again (``verify`` asks for one after its check). The position
        is taken from the file as it is now (:meth:`position_at`), at the fsynced size on record if that is
        before ``end``; nothing is kept if the file was replaced meanwhile or the line there is not whole."""
        now, size = self.stat()
        if identity is None or now != identity or end.offset > size or not end.offset:
            return
        with self.reading():
            durable = self.durable_end(0, size)  # None: it fsynced the log, all of it is durable
            known = self.position_at(end.offset if durable is None else min(durable, end.offset))
        if known is not None and (now != self._known_identity or known.offset > self._known.offset):
            self._known, self._known_identity = known, now

    # -- reading ---------------------------------------------------------------------------------------

    def scan(self, start: Position = START, *, chain: bool = False, limit: int | None = None) -> Scan:
        """The events after ``start`` (up to ``limit`` bytes of the log, if given), checked as :class:`Scan`
        describes."""
        return Scan(self, start, chain=chain, limit=limit)

    def stat(self) -> tuple[tuple[int, int] | None, int]:
        """(identity, size) of the log file with one system call; ``(None, 0)`` if it does not exist."""
        try:
            st = os.stat(self.path, follow_symlinks=not self.nofollow)
        except FileNotFoundError:
            return None, 0
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        if stat.S_ISLNK(st.st_mode):  # when refused
            raise symlink_refused("read", self.path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO, a device, a directory
            raise LedgerIOError(
                f"cannot read {self.path}: it is {file_kind(st.st_mode)}, not a regular file (refused)"
            )
        return (st.st_dev, st.st_ino), st.st_size

    def size(self) -> int:
        return self.stat()[1]

    def line_before(self, offset: int, fd: int | None = None) -> bytes:
        """The whole line that ends at ``offset`` (newline excluded); ``b""`` if none does. With ``fd``, read
        through that descriptor of the log, left open."""
        own = fd is None
        try:
            if fd is None:
                fd = self.ops.open(self.path, os.O_RDONLY | self.nofollow | _NONBLOCK)
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        try:
            want = 4096  # a line is usually far shorter: read more only when it is not
            while True:
                start = max(0, offset - want)
                window = self.ops.pread(fd, offset - start, start)
                if len(window) != offset - start or not window.endswith(b"\n"):
                    return b""
                cut = window.rfind(b"\n", 0, len(window) - 1)
                if cut != -1 or start == 0:
                    return window[cut + 1 : -1]
                if want > MAX_LINE_BYTES:
                    return b""
                want *= 16
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        finally:
            if own:
                self.ops.close(fd)

    def hash_at(self, offset: int) -> str | None:
        """The chain hash of the line that ends at ``offset`` (:data:`GENESIS_HASH` at 0); ``None`` if no
        whole line ends there."""
        if offset == 0:
            return GENESIS_HASH
        line = self.line_before(offset)
        return line_hash(line) if line else None

    def position_at(self, offset: int, fd: int | None = None) -> Position | None:
        """The position after the whole line that ends at ``offset``; ``None`` if there is none. Read
        through ``fd`` if given (a writer's descriptor of the log)."""
        if offset == 0:
            return START
        line = self.line_before(offset, fd)
        if not line or not check_line(line):
            return None
        try:
            event = decode_event(line)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            return None
        return Position(offset, event.seq, line_hash(line), event.ts)

    # -- the locks --------------------------------------------------------------------------------------

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the queue lock: writers take turns under it to read the latest state, check their change
        and hand it over (:meth:`submit`). Freed if the holder dies."""
        return self._lock.held()

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold the sync lock shared: no leader is between its write and its fsync, so a reader takes in
        only lines whose fsync is done."""
        return self._sync.held(shared=True)

    def syncing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the sync lock exclusively (then the queue lock may be taken too; never the other way)."""
        return self._sync.held()

    # -- writing: group commit -------------------------------------------------------------------------

    def create(self) -> bool:
        """Create an empty log (file and directory entry fsynced) if there is none. Under the lock."""
        try:
            fd = self.ops.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
        except FileExistsError:
            return False
        except OSError as exc:
            raise io_error("create", self.path, exc) from None
        try:
            try:
                self.ops.fsync(fd)
            finally:
                self.ops.close(fd)
            self.ops.point("log.created")
            self.ops.fsync_dir(self.path.parent)
        except OSError as exc:
            raise io_error("create", self.path, exc) from None
        return True

    def read_staged(self, after: Position) -> list[tuple[bytes, EventType]]:
        """Under the queue lock, with ``after`` the end of the log: the staged events that continue it.

        Staged lines the log already holds (a leader died between moving them and emptying the file) are
        skipped; from the first line that is damaged or does not continue the chain (a writer died while
        staging, or a power loss left garbage) the file is cut back. No writer was told those were recorded.
        """
        self.log_end = after
        fd = self._staging_fd()
        chunks: list[bytes] = []
        size = 0
        try:
            while True:  # nobody appends while the queue lock is held: a short read is the end
                chunk = self.ops.pread(fd, _CHUNK, size)
                if chunk:
                    chunks.append(chunk)
                    size += len(chunk)
                if len(chunk) < _CHUNK:
                    break
        except OSError as exc:
            raise io_error("read", self.staged_path, exc) from None
        if not size:  # the common case: nothing staged
            self._staged_size, self.staged = 0, b""
            return []
        data = b"".join(chunks)
        records: list[tuple[bytes, EventType]] = []
        seq, prev = after.seq, after.last_hash
        keep = end = 0
        for line in data.split(b"\n")[:-1]:
            if not check_line(line):
                break
            try:
                event = decode_event(line)
            except (msgspec.MsgspecError, UnicodeDecodeError):
                break
            if event.seq <= after.seq and not records:  # moved already
                keep = end = end + len(line) + 1
                continue
            if event.seq != seq + 1 or event.prev != prev or event.v > FORMAT_VERSION:
                break
            records.append((line, event))
            seq, prev = event.seq, line_hash(line)
            end += len(line) + 1
        if end != len(data):
            log.warning(
                "%s: dropped %d staged bytes that do not continue the log (a writer died while staging)",
                self.staged_path,
                len(data) - end,
            )
            self._cut_back(fd, end, self.staged_path)
        self._staged_size = end
        self.staged = data[keep:end]
        return records

    def submit(self, data: bytes, end: Position, line: bytes = b"") -> Ticket:
        """Under the queue lock, after :meth:`read_staged`: hand over ``data`` (whole lines continuing what
        is staged, the last one ``line``), which ends at ``end``; then let the queue lock go and call
        :meth:`settle`.

        If no fsync is in flight, this writer leads: what is staged and ``data`` go to the log in one write
        (fsynced by :meth:`settle`). Otherwise ``data`` is staged for the next leader. On a failed write
        nothing of ``data`` is anywhere and :class:`LedgerIOError` is raised.

        Where other writers are about (:attr:`_crowd`), ``data`` is staged even when no fsync is in flight:
        writers come back together once an fsync they shared returns, and the first one back would
        otherwise take the sync lock at once, fsync alone, and keep the others (woken, not yet running)
        from even seeing that their own fsync is done. Staged, it leads from :meth:`settle` once those have
        looked, and gathers whoever stages meanwhile.
        """
        if data and self._crowd and self._fsync_time >= _GATHER_FROM:
            self._stage(data)
            return Ticket(end, leader=False, line=line, gather=True)
        if self._sync.acquire(wait=False):
            start = self.log_end.offset
            try:
                block = self.staged + data if self.staged else data
                if block:
                    self._write(block, start)
                    if self._staged_size or self.staged:
                        self._empty_staging()
            except BaseException:
                self._sync.release()
                raise
            return Ticket(end, leader=True, start=start, line=line)
        if data:
            self._stage(data)
        return Ticket(end, leader=False, line=line)

    def _stage(self, data: bytes) -> None:
        """Append ``data`` to the staging file, under the queue lock; on a failed or short write it is cut
        back and :class:`LedgerIOError` is raised."""
        fd = self._staging_fd()
        try:
            written = self.ops.write(fd, data)
        except OSError as exc:
            self._cut_back(fd, self._staged_size, self.staged_path)
            raise io_error("append to", self.staged_path, exc) from None
        if written != len(data):
            self._cut_back(fd, self._staged_size, self.staged_path)
            raise LedgerIOError(
                f"cannot append to {self.staged_path}: short write ({written} of {len(data)} bytes)"
            )
        self._staged_size += written
        self.ops.point("staged.after_write")

    def settle(self, ticket: Ticket) -> bool:
        """Return once the log holds ``ticket.end`` fsynced: ``True``; or ``False`` if it never will (a
        leader's write or fsync failed and the lines after the fsynced part were dropped).

        A leader fsyncs. Any other writer waits for the sync lock (one that staged with no fsync perhaps in
        flight, :attr:`Ticket.gather`, first pauses for the others: :meth:`_pause`); if the last leader's
        fsync did not cover its lines, it leads: it moves everything staged into the log with one write and
        fsyncs. Raises :class:`DurabilityError` if this writer's own fsync failed (the caller must stop
        writing) and :class:`LedgerIOError` if its move failed.
        """
        if ticket.leader:
            self._crowd = False  # it led alone: nothing staged, nothing of others read
            try:
                self.flush(ticket.start, ticket.end.offset)
            finally:
                self._sync.release()
            return True
        if ticket.gather:
            self._pause()
        with self._sync.held(shared=True):  # every waiter checks at once when the leader lets go
            if self.flushed() >= ticket.end.offset:
                self._crowd = self._holds(ticket)  # another writer's fsync carried it
                return self._crowd
        with self._sync.held():
            flushed = self.flushed()
            if flushed >= ticket.end.offset:  # another writer's fsync carried it
                self._crowd = self._holds(ticket)
                return self._crowd
            with self.locked():
                self.read_staged(self.unflushed_end(flushed))
                start = self.lead()
            self.flush(start.offset, start.offset + len(self.staged))
            # It wrote and fsynced what is staged, from ``start``: where its line ends inside that, the
            # bytes are known; elsewhere (a leader that died after its write moved it, or it wrote nothing)
            # the log is read.
            at = ticket.end.offset - start.offset
            want = ticket.line + b"\n"
            if ticket.line and 0 < at <= len(self.staged):
                held = self.staged.endswith(want, 0, at) and (
                    at == len(want) or self.staged[at - len(want) - 1] == 10  # a whole line
                )
            else:
                held = self._holds(ticket)
            self._crowd = held and len(self.staged) > len(want)  # its fsync carried others' lines
            return held

    def _pause(self) -> None:
        """Wait, holding no lock, for the writers that shared the last fsync to stage again: until as many
        lines are staged as this handle's last lead moved, or at most a quarter of an fsync (on a disk
        whose flush takes milliseconds, long enough for them; on a fast one, next to nothing). The first
        to wake then leads for all of them."""
        limit = min(self._fsync_time / 4, _GATHER_MAX)
        deadline = time.monotonic() + limit
        fd = self._staging_fd()
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, limit / 4))
            if self._batch > 1:
                try:
                    if self.ops.pread(fd, _CHUNK, 0).count(b"\n") >= self._batch:
                        return
                except OSError:
                    return  # the leader reads it again, under the lock, and reports

    def _holds(self, ticket: Ticket) -> bool:
        """Whether the log's line that ends at ``ticket.end`` is the ticket's (its chain hash, when the
        ticket wrote nothing): one read through the writer's descriptor of the log."""
        end = ticket.end.offset
        if not ticket.line:
            if end == 0:
                return ticket.end.last_hash == GENESIS_HASH
            line = self.line_before(end, self._log_fd())
            return bool(line) and line_hash(line) == ticket.end.last_hash
        want = b"\n" + ticket.line + b"\n"
        at = end - len(want)
        if at == -1:  # the log's first line
            want, at = want[1:], 0
        if at < 0:
            return False
        try:
            return self.ops.pread(self._log_fd(), len(want), at) == want
        except OSError as exc:
            raise io_error("read", self.path, exc) from None

    def lead(self) -> Position:
        """Under the sync lock and then the queue lock, after :meth:`read_staged`: move what is staged into
        the log with one write. Returns where the moved lines begin; :meth:`flush` next, with the queue lock
        let go. If the write fails, the staging file is emptied too: every writer whose lines were there
        learns that they were not recorded."""
        start = self.log_end
        if self.staged:
            try:
                self._write(self.staged, start.offset)
                self._batch = self.staged.count(b"\n")
            finally:
                self._empty_staging(keep=True)
        return start

    def flush(self, start: int, size: int, *, force: bool = False) -> None:
        """Under the sync lock only (the queue lock let go): fsync the log unless it is known to be (or
        ``force``), and record that it is fsynced up to ``size`` (its size now). If the fsync fails, the log
        is cut back to ``start`` (where this leader's write began), the staging file is emptied, and
        :class:`DurabilityError` is raised."""
        if not force and size == start and self.flushed() == size:
            return
        fd = self._append_fd()
        began = time.monotonic()
        try:
            self.ops.fsync(fd)
        except OSError as exc:
            with self.locked():  # what was written since the last good fsync is in doubt: drop it
                self._cut_back(fd, start)
                self._empty_staging()
            err = DurabilityError(
                f"cannot append to {self.path}: fsync failed ({exc.strerror or exc}); "
                "the event was not recorded and this ledger handle accepts no more writes"
            )
            err.errno = exc.errno
            raise err from None
        self._fsync_time = time.monotonic() - began  # what pauses are decided and scaled by
        self.ops.point("log.after_fsync")
        self._set_flushed(size, keep_same=force)

    def recover(self) -> None:
        """Make the log ready for writing, as a leader: create it if missing, set a torn tail aside, move
        what a writer that died left staged into the log, fsync it and record the fsynced size (always:
        the record may have survived a reboot or come with a copied directory). A handle's first
        :meth:`append` runs it (the store API's writable open appends nothing, to run it then)."""
        with self.syncing():
            with self.locked():
                self.create()
                # from the part on record as fsynced (an unreadable record says nothing: from the start)
                scan = self.scan(self.position_at(self.fsynced_part(self.size())) or START)
                for _ in scan.runs():
                    pass
                if scan.torn is not None:
                    self.repair(scan.torn)
                self.read_staged(scan.end)
                start = self.lead()
            self.flush(start.offset, start.offset + len(self.staged), force=True)
        self._recovered = True

    def unflushed_end(self, flushed: int | None = None) -> Position:
        """Under both locks: where the whole lines of the log end. Lines after the part known to be fsynced
        (``flushed``, when the caller read it under the sync lock) were written by a leader that died
        before its fsync; a torn tail is set aside."""
        fd = self._log_fd()
        start = self.position_at(self.flushed() if flushed is None else flushed, fd) or START
        scan = Scan(self, start, chain=False, fd=fd)
        for _ in scan.runs():
            pass
        if scan.torn is not None:
            self.repair(scan.torn)
        return scan.end

    def _log_fd(self) -> int:
        """The writer's descriptor of the log, open for reading; opened on first use (and again after
        :meth:`append` found the log replaced)."""
        fd = self._read_fd.get()
        if fd is None:
            try:
                fd = self.ops.open_regular(self.path, os.O_RDONLY | self.nofollow)
                try:
                    st = self.ops.fstat(fd)
                except BaseException:
                    self.ops.close(fd)
                    raise
            except OSError as exc:
                raise io_error("read", self.path, exc) from None
            self._read_fd.fd, self._read_id = fd, (st.st_dev, st.st_ino)
        return fd

    def flushed(self) -> int:
        """How much of the log is known to be fsynced (0 when the record is missing or damaged: then the
        next writer fsyncs, which is always safe). Under the sync lock."""
        try:
            data = self.ops.pread(self._sync_state_fd(), _FLUSHED.size + 4, 0)
        except OSError as exc:
            raise io_error("read", self.sync_path, exc) from None
        flushed = _decode_record(data)
        return 0 if flushed is None else flushed

    def fsynced_part(self, size: int) -> int:
        """How many bytes at the start of the log (``size`` bytes now) are known to have been fsynced: the
        record, when it is intact and no larger than the log; else 0 (nothing is known).

        The record is written only after the fsync it reports, so on the same log it never claims more than
        is durable, even after a power loss. A record larger than the log belongs to another file (a copy
        taken while a writer appended, a log put back from a backup) and says nothing. Replacing
        ``events.jsonl`` by a longer file while the record stays is the one case it cannot tell:
        docs/format.md says to remove the record with it."""
        recorded = self._recorded()
        return recorded if recorded is not None and recorded <= size else 0

    def durable_end(self, start: int, size: int) -> int | None:
        """Under :meth:`reading` (no leader is between its write and its fsync), for a reader at offset
        ``start`` of a log last seen ``size`` bytes long: where to stop reading.

        Normally the fsynced size on record: lines beyond it were written by a leader that died before its
        fsync (the next writer fsyncs them), and a reader does not take them in. Where the record cannot say
        (missing, damaged, larger than the log, or behind ``start``), the reader fsyncs the log itself and
        may read all of it: ``None``."""
        recorded = self._recorded()
        if recorded is not None and recorded < size and self._record_replaced():
            recorded = self._recorded()
        if recorded is not None and recorded > size:
            size = self.size()  # the log grew between the caller's look and the lock
        if recorded is not None and start <= recorded <= size:
            return recorded
        try:
            fd = self.ops.open(self.path, os.O_RDONLY | self.nofollow | _NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        try:
            self.fsync_for_reader(fd)
        finally:
            self.ops.close(fd)
        return None

    def fsync_for_reader(self, fd: int) -> None:
        """fsync the log, open for reading as ``fd``: a reader about to read what the record does not
        vouch for makes it durable first."""
        try:
            self.ops.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS):  # nothing to sync there
                raise io_error("fsync", self.path, exc) from None

    def _recorded(self) -> int | None:
        """The fsynced size on record, ``None`` if there is no intact record. Opens nothing for writing."""
        fd = self._sync_fd.get()
        if fd is None:
            fd = self._record_fd.get()
        if fd is None:
            try:
                fd = self._record_fd.fd = self.ops.open(
                    self.sync_path, os.O_RDONLY | self.nofollow | _NONBLOCK
                )
            except OSError:  # missing (no writer ever ran) or unreadable: no record
                return None
        try:
            return _decode_record(self.ops.pread(fd, _FLUSHED.size + 4, 0))
        except OSError:
            return None

    def _record_replaced(self) -> bool:
        """Whether the record file this reader holds open was removed (and perhaps made anew by a writer):
        then it is closed, for the next read to open the file now in place. Asked only when the record
        stops short of the log, so a reader pays nothing for it otherwise."""
        fd = self._record_fd.get()
        if fd is None or self._sync_fd.get() is not None:
            return False
        try:
            gone = self.ops.fstat(fd).st_nlink == 0
        except OSError:
            gone = True
        if gone:
            self._record_fd.close()
        return gone

    def _set_flushed(self, size: int, *, keep_same: bool = False) -> None:
        record = _FLUSHED.pack(_FLUSHED_MAGIC, size)
        record += zlib.crc32(record).to_bytes(4, "little")
        fd = None
        try:
            fd = self._sync_state_fd()
            if keep_same and self.ops.pread(fd, len(record) + 1, 0) == record:
                return  # it says so already (an open that records nothing leaves the file as it was)
            self.ops.pwrite(fd, record, 0)
        except OSError as exc:
            # The old record would make readers stop before the lines just acknowledged: leave none (then
            # readers fsync the log themselves and read it all, and the next writer fsyncs again).
            with contextlib.suppress(OSError):
                if fd is not None:
                    self.ops.ftruncate(fd, 0)
            log.warning("could not record in %s that the log is fsynced: %s", self.sync_path, exc)

    def _write(self, data: bytes, end: int) -> None:
        """Append whole lines ``data`` at ``end`` (the current size) with one write. On a failed or short
        write the file is cut back to ``end`` and :class:`LedgerIOError` is raised."""
        fd = self._append_fd()
        ops = self.ops
        ops.point("log.before_write")
        try:
            written = ops.write(fd, data)
        except OSError as exc:
            self._cut_back(fd, end)
            raise io_error("append to", self.path, exc) from None
        if written != len(data):
            self._cut_back(fd, end)
            raise LedgerIOError(f"cannot append to {self.path}: short write ({written} of {len(data)} bytes)")
        ops.point("log.after_write")

    def _empty_staging(self, *, keep: bool = False) -> None:
        """Empty the staging file (``keep``: still remember what was in it, for the caller)."""
        if self._staged_size:
            self._cut_back(self._staging_fd(), 0, self.staged_path)
            self._staged_size = 0
        if not keep:
            self.staged = b""

    def _append_fd(self) -> int:
        fd = self._fd.get()
        if fd is None:
            fd = self._open_once(self._fd, self.path, os.O_WRONLY | os.O_APPEND, "open for appending")
            st = os.fstat(fd)  # once per open: which file it is (append compares the path's)
            self._fd_identity = (st.st_dev, st.st_ino)
        return fd

    def _staging_fd(self) -> int:
        return self._open_once(self._staged_fd, self.staged_path, os.O_RDWR | os.O_CREAT | os.O_APPEND)

    def _sync_state_fd(self) -> int:
        return self._open_once(self._sync_fd, self.sync_path, os.O_RDWR | os.O_CREAT)

    def _open_once(self, owned: OwnedFd, path: Path, flags: int, action: str = "open") -> int:
        """The descriptor ``owned`` keeps open on ``path``, opened on first use."""
        fd = owned.get()
        if fd is None:
            try:
                fd = owned.fd = self.ops.open_regular(path, flags | self.nofollow, 0o666)
            except OSError as exc:
                raise io_error(action, path, exc) from None
        return fd

    def _cut_back(self, fd: int, end: int, path: Path | None = None) -> None:
        try:
            self.ops.ftruncate(fd, end)
        except OSError as exc:
            # What is left is a torn tail (or staged lines that do not continue the log): the next writer
            # sets it aside or drops it.
            log.warning("could not cut %s back to %d bytes: %s", path or self.path, end, exc)

    def repair(self, torn: TornTail) -> Path:
        """Set a torn tail aside in ``events.jsonl.torn-<offset>-<digest>``; cut the log back. Under the lock.

        The bytes are kept where an auditor can see them, never silently dropped. The name depends only on
        where the tail was and what it held, so a repair interrupted by a crash and run again keeps one copy.
        """
        ops = self.ops
        try:
            for name in os.listdir(self.path.parent):  # left by a crash while setting a tail aside
                if name.startswith(f"{self.path.name}.torn-") and TEMP_MARK in name:
                    ops.unlink(self.path.parent / name)
            fd = ops.open_regular(self.path, os.O_RDONLY | self.nofollow)
            try:
                data = ops.pread(fd, os.fstat(fd).st_size - torn.offset, torn.offset)
            finally:
                ops.close(fd)
            aside = self.path.with_name(
                f"{self.path.name}.torn-{torn.offset}-{hashlib.sha256(data).hexdigest()[:16]}"
            )
            if not aside.exists():
                atomic_write(ops, aside, data, label="torn")
            fd = self._append_fd()
            ops.ftruncate(fd, torn.offset)
            ops.fsync(fd)
        except OSError as exc:
            raise io_error("set aside the torn tail of", self.path, exc) from None
        log.warning(
            "%s: set aside %d torn bytes from line %d (offset %d) in %s",
            self.path,
            len(data),
            torn.line,
            torn.offset,
            aside.name,
        )
        return aside

    def close(self) -> None:
        self._fd.close()
        self._staged_fd.close()
        self._sync_fd.close()
        self._record_fd.close()
        self._read_fd.close()
        self._lock.close()
        self._sync.close()
