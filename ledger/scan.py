"""Reading ``events.jsonl``: the whole lines after a place in the log, checked, and what the scan stopped at.

A :class:`Scan` yields only lines that are whole (newline-terminated, crc valid) and in sequence, and stops
before anything else at the end: a *torn tail* (bytes beyond the part known to be fsynced that are not
whole events: a crash cut an append short) is reported in :attr:`Scan.torn`, never yielded; damage
anywhere else raises :class:`~ledger.errors.CorruptLogError` naming its line.

No line of the format is longer than :data:`~ledger.events.MAX_LINE_BYTES` (1 MiB), so the scan never
holds more than that of one line: a longer run of bytes without a newline is a damaged line, judged from
its last megabyte. Whatever the log holds, a scan reads it front to back in chunks of 1 MiB and holds a
few of them: each byte once, and once more from a damaged line on (for the verdict on what follows it),
with the holes of a sparse file skipped.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Generator, Iterator
from typing import Final, cast

import msgspec

from ledger.backend import Head, TornTail
from ledger.errors import CorruptLogError, io_error
from ledger.events import (
    FORMAT_VERSION,
    MAX_LINE_BYTES,
    EventType,
    check_line,
    check_lines,
    decode_event,
    decode_events,
    line_hash,
    line_hashes,
)
from ledger.logfile import CHUNK, LogFile
from ledger.syncstate import SyncRecord

__all__ = ("Run", "Scan")

Run = tuple[list[bytes], list[EventType]]
"""Consecutive events with their lines exactly as stored (newline excluded): ``lines[i]`` is
``events[i]``'s."""

_FEW: Final = 16
"""Runs of fewer lines than this are read one line at a time (the checks over a whole run cost more)."""
_EVENT_START: Final = b'{"type":'
_DAMAGED: Final = "damaged line (bad framing or crc)"
_UNENDED: Final = "a line without its newline"
_seq_of = operator.attrgetter("seq")
_version_of = operator.attrgetter("v")
_prev_of = operator.attrgetter("prev")


class Scan:
    """The events after ``start``, in runs (:meth:`runs`); afterwards ``end`` and ``torn`` say where it
    stopped.

    With ``chain=True`` every line's ``prev`` is checked against the SHA-256 of the line before (what
    ``verify`` does); otherwise each line's crc and ``seq`` are checked, and ``prev`` only where the scan
    joins the part already read. A damaged line followed by a whole one raises :class:`CorruptLogError`;
    damaged bytes at the very end are reported in ``torn`` and not yielded, unless they start inside the
    part of the log known to be fsynced (:meth:`SyncRecord.fsynced_part`): a crash cannot tear what was
    fsynced, so that is corruption too. With ``limit`` the scan reads no further than that offset (a line
    boundary: :meth:`SyncRecord.durable_end`; a limit inside a line is another file's record, so the scan
    fsyncs the log and reads on). With ``fd`` it reads through that descriptor of the log (a writer's,
    kept open), which it leaves open, instead of opening the log.
    """

    def __init__(
        self,
        file: LogFile,
        record: SyncRecord,
        start: Head,
        *,
        chain: bool,
        limit: int | None = None,
        fd: int | None = None,
    ) -> None:
        self._file = file
        self._record = record
        self.start = start
        self.end = start
        self.torn: TornTail | None = None
        self._chain = chain
        self._limit = limit
        self._fd = fd
        # where the scan is: after the line ``_line`` (event ``_seq`` at ``_ts``), which ends at ``_offset``;
        # ``_hash`` is its chain hash where it was computed (else ``line_hash(_line)``)
        self._offset, self._seq, self._ts = start.at, start.seq, start.ts
        self._hash: str | None = start.hash
        self._line = b""

    def skip(self) -> Head:
        """Read to the end, keeping nothing: the place after the last whole line (:attr:`end`)."""
        for _ in self.runs():
            pass
        return self.end

    def runs(self) -> Generator[Run, None, None]:
        """The events in runs, one per chunk of the file read, each with its lines exactly as stored
        (newline excluded). ``end`` is set once the scan stops (after the last run, or at a problem).

        A run whose lines are all whole, decode to one event each and continue ``seq`` (and, with
        ``chain``, the chain) is checked and decoded in C-level loops over the whole run. Any other run is
        read again one line at a time, which finds the exact line and reason of the first problem; the
        events before it are yielded first, as a line-by-line reader would have.
        """
        fd = self._fd
        if fd is None:
            try:
                fd = self._file.open_for_reading()
            except FileNotFoundError:
                if self.start.at:
                    raise CorruptLogError(
                        self._file.path, self.start.seq, "the log file is missing"
                    ) from None
                return
        try:
            for data, lines, whole in self._chunks(fd):
                fast = (  # a few lines (a writer or watcher catching up) cost less one at a time
                    None if len(lines) < _FEW else self._fast_run(data, whole, lines)
                )
                if fast is not None:
                    events, self._hash = fast
                    last = events[-1]
                    self._offset += whole
                    self._seq, self._ts, self._line = last.seq, last.ts, lines[-1]
                    yield lines, events
                elif not (yield from self._one_by_one(fd, lines)):
                    return
        finally:
            if self._fd is None:
                self._file.ops.close(fd)
            if self._line:
                self.end = Head(self._seq, self._hash or line_hash(self._line), self._ts, self._offset)

    def _chunks(self, fd: int) -> Iterator[tuple[bytes, list[bytes], int]]:
        """The log from ``start`` in chunks split into lines: (the bytes, their whole lines, how many bytes
        those are). A line that runs across chunks goes ahead of the next; where the log ends inside a
        line, or a line runs past the longest a line may be, it is judged there (torn tail or damage)."""
        ops, limit = self._file.ops, self._limit
        read_at, pending = self.start.at, b""
        while True:
            want = CHUNK if limit is None else min(CHUNK, limit - read_at)
            if want <= 0:
                if not pending:
                    return
                # The record ends inside a line, where this log's never does: it came with another file
                # and says nothing. Read on, fsynced first, as where there is no record.
                self._file.fsync_for_reader(fd)
                limit = None
                continue
            try:
                chunk = ops.pread(fd, want, read_at)
            except OSError as exc:
                raise io_error("read", self._file.path, exc) from None
            if not chunk:
                break
            read_at += len(chunk)
            if pending and _runs_too_long(pending, chunk):
                self._stop_at_bad_line(fd, read_at - len(chunk) - len(pending), self._seq + 1, None)
                return
            data = pending + chunk if pending else chunk
            lines = data.split(b"\n")
            pending = lines.pop()
            if lines:
                yield data, lines, len(data) - len(pending)
        if pending:
            self._torn_tail(fd, read_at - len(pending), len(pending), self._seq + 1, _UNENDED)

    def _fast_run(
        self, data: bytes, whole: int, lines: list[bytes]
    ) -> tuple[list[EventType], str | None] | None:
        """The events of ``lines`` (the first ``whole`` bytes of ``data``), which follow where the scan is,
        and the last line's chain hash where it was computed (with ``chain``); or ``None`` unless every line
        is whole, decodes to one event, continues ``seq`` and passes the chain checks."""
        if not check_lines(lines):
            return None
        try:
            events = decode_events(memoryview(data)[:whole])
        except (msgspec.MsgspecError, UnicodeDecodeError):
            return None
        seq = self._seq
        if (
            len(events) != len(lines)
            or list(map(_seq_of, events)) != list(range(seq + 1, seq + 1 + len(events)))
            or max(map(_version_of, events)) > FORMAT_VERSION
        ):
            return None
        # where the scan joins what it read before (only there unless the whole chain is checked)
        if (self._chain or seq == self.start.seq) and events[0].prev != (self._hash or line_hash(self._line)):
            return None
        if not self._chain:
            return events, None
        hashes = line_hashes(lines)
        if list(map(_prev_of, itertools.islice(events, 1, None))) != hashes[:-1]:
            return None
        return events, hashes[-1]

    def _one_by_one(self, fd: int, lines: list[bytes]) -> Generator[Run, None, bool]:
        """The events of ``lines`` read one line at a time, up to the first problem: its exact line and
        reason. Yields the events before it (if any), then raises, or stops at a damaged line; returns
        whether the scan reads on."""
        path = self._file.path
        offset, seq, ts, last_hash, last_line = self._offset, self._seq, self._ts, self._hash, self._line
        events: list[EventType] = []
        failure: CorruptLogError | None = None
        damaged = False
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
        self._offset, self._seq, self._ts, self._hash, self._line = offset, seq, ts, last_hash, last_line
        if events:
            yield lines[: len(events)], events
        if failure is not None:
            raise failure
        if damaged:
            self._stop_at_bad_line(fd, offset, seq + 1, _DAMAGED)
            return False
        return True

    def _misfit(
        self, event: EventType, seq: int, last_hash: str | None, last_line: bytes
    ) -> CorruptLogError | None:
        """Why ``event`` cannot follow the line read before it (event ``seq``, ``last_line``, whose chain
        hash is ``last_hash`` where known), if it cannot."""
        path = self._file.path
        if event.seq != seq + 1:
            return CorruptLogError(path, seq + 1, f"seq is {event.seq}, expected {seq + 1}")
        if event.v > FORMAT_VERSION:
            return CorruptLogError(
                path, seq + 1, f"format version {event.v} is newer than this code ({FORMAT_VERSION})"
            )
        if (self._chain or not last_line) and event.prev != (last_hash or line_hash(last_line)):
            return CorruptLogError(path, seq + 1, "chain broken: prev does not match the line before")
        return None

    def _stop_at_bad_line(self, fd: int, bad_offset: int, line_no: int, reason: str | None) -> None:
        """A damaged line at ``bad_offset`` (``reason`` ``None``: one longer than a line may be, which may
        not end at all): corruption if a whole event follows it anywhere (on a later line, or on the same
        line after a lost newline), else a torn tail. Read in chunks to the end of the file."""
        path = self._file.path
        try:
            end = self._file.ops.fstat(fd).st_size
        except OSError as exc:
            raise io_error("read", path, exc) from None
        lost_newline = False
        for i, (piece, ended) in enumerate(_pieces(self._file, fd, bad_offset, end)):
            if not ended:  # what follows the last newline is no line
                break
            if i == 0:
                reason = reason or _DAMAGED
                lost_newline = _holds_an_event(piece)
            elif len(piece) <= MAX_LINE_BYTES and check_line(piece):
                raise CorruptLogError(
                    path, line_no, f"{reason}, followed by a valid line (line {line_no + i})"
                )
        reason = reason or _UNENDED
        if lost_newline:
            raise CorruptLogError(
                path, line_no, f"{reason}, and a whole event follows on the same line (lost newline)"
            )
        self._torn_tail(fd, bad_offset, end - bad_offset, line_no, reason)

    def _torn_tail(self, fd: int, offset: int, size: int, line_no: int, reason: str) -> None:
        """Bytes from ``offset`` to the end that are not whole events: a torn tail if they lie beyond what
        is known to be fsynced; else the fsynced part itself is damaged, which no crash does (unless a
        reader without the lock caught a write in progress that is whole and fsynced by now: it stops
        before it)."""
        try:
            fsynced = self._record.fsynced_part(self._file.ops.fstat(fd).st_size)
        except OSError as exc:
            raise io_error("read", self._file.path, exc) from None
        if offset < fsynced:
            if _whole_lines(self._file, fd, offset, fsynced):
                return
            raise CorruptLogError(
                self._file.path,
                line_no,
                f"{reason} inside the part of the log known to be fsynced (its first {fsynced} bytes): "
                "damage, not a torn tail",
            )
        self.torn = TornTail(offset, size, line_no)


def _runs_too_long(pending: bytes, chunk: bytes) -> bool:
    """Whether the line that starts with ``pending`` and goes on in ``chunk`` is longer than any line may
    be (no newline where one must come)."""
    room = MAX_LINE_BYTES - len(pending) + 1  # the newline must be among the next ``room`` bytes
    return len(chunk) >= room and chunk.find(b"\n", 0, room) == -1


def _pieces(file: LogFile, fd: int, start: int, stop: int) -> Iterator[tuple[bytes, bool]]:
    """The newline-separated pieces of the log from ``start`` to ``stop``, each with whether a newline
    ended it (only the last does not). A piece longer than a line may be comes as its last
    ``MAX_LINE_BYTES + 1`` bytes: what it holds before those cannot be part of any line."""
    keep = MAX_LINE_BYTES + 1
    carry: list[bytes] = []  # the piece so far, only as much of it as can matter
    carried = 0
    at = start
    while at < stop:
        try:
            stored = min(file.ops.next_data(fd, at), stop)
            # a hole holds zeros, so no newline: it is not read
            chunk = (
                bytes(min(stored - at, keep))
                if stored > at
                else file.ops.pread(fd, min(CHUNK, stop - at), at)
            )
        except OSError as exc:
            raise io_error("read", file.path, exc) from None
        if not chunk:
            break
        at = stored if stored > at else at + len(chunk)
        if chunk.find(b"\n") == -1:
            carry.append(chunk)
            carried += len(chunk)
            while carried - len(carry[0]) >= keep:
                carried -= len(carry.pop(0))
            continue
        parts = chunk.split(b"\n")
        carry.append(parts[0])
        yield b"".join(carry)[-keep:], True
        for part in itertools.islice(parts, 1, len(parts) - 1):
            yield part, True
        carry, carried = [parts[-1]], len(parts[-1])
    yield b"".join(carry)[-keep:], False


def _holds_an_event(line: bytes) -> bool:
    """Whether a whole event ends ``line`` after its first byte: a newline before it was lost. (Each
    candidate is looked at through a view: the frame, checked first, costs nothing to reject.)"""
    view = memoryview(line)
    start = line.find(_EVENT_START, max(1, len(line) - MAX_LINE_BYTES))
    while start != -1:
        if check_line(cast("bytes", view[start:])):  # it reads a view as it reads bytes
            return True
        start = line.find(_EVENT_START, start + 1)
    return False


def _whole_lines(file: LogFile, fd: int, start: int, stop: int) -> bool:
    """Whether the log from ``start`` to ``stop`` is whole lines only, each of which checks itself."""
    for piece, ended in _pieces(file, fd, start, stop):
        if not ended:
            return piece == b""
        if len(piece) > MAX_LINE_BYTES or not check_line(piece):
            return False
    return True
