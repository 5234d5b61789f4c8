"""The append-only log file ``events.jsonl``: append, read, recover a torn tail, verify the chain.

This module is the storage seam of the ledger. :class:`EventLog` is the file backend; everything above it
(the store API, the projections) talks to it only through :class:`Position`, :meth:`EventLog.scan`,
:meth:`EventLog.locked`, :meth:`EventLog.append` and :meth:`EventLog.repair`, so a second backend (a shared
database for pipelines on several machines) can stand in its place without touching them.

Reading never takes a lock: it yields only lines that are whole (newline-terminated, crc valid) and in
sequence, and stops before anything else at the end. Appending happens under an exclusive ``flock`` on
``events.jsonl.lock``; the writer first reads any lines other processes appended, so every change is
checked against the latest state.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from ledger.errors import CorruptLogError, DurabilityError, LedgerIOError, io_error
from ledger.events import (
    FORMAT_VERSION,
    GENESIS_HASH,
    MAX_LINE_BYTES,
    EventType,
    check_line,
    decode_event,
    line_hash,
)
from ledger.fileops import TEMP_MARK, FileLock, FileOps, OwnedFd, atomic_write

__all__ = ("START", "EventLog", "Position", "Scan", "TornTail")

log = logging.getLogger("ledger")

_CHUNK: Final = 1 << 20
_second = operator.itemgetter(1)
_EVENT_START: Final = b'{"type":'
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True, slots=True)
class Position:
    """How far a reader has got: the end of the last whole line it accepted."""

    offset: int = 0
    """Bytes of the log up to and including that line's newline."""
    seq: int = 0
    """Its ``seq`` (0 before the first event)."""
    last_hash: str = GENESIS_HASH
    """Its chain hash: what the next line's ``prev`` must be."""
    last_ts: str = ""
    """Its ``ts``: the next event's ``ts`` is never earlier."""


START: Final = Position()


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at the end of the log that do not form whole events (a crash cut an append short)."""

    offset: int
    size: int
    line: int
    """1-based line number where the torn bytes start."""


class Scan:
    """Iterates over the events after ``start``; afterwards ``end`` and ``torn`` say where it stopped.

    With ``chain=True`` every line's ``prev`` is checked against the SHA-256 of the line before (what
    ``verify`` does); otherwise each line's crc and ``seq`` are checked, and ``prev`` only where the scan
    joins the part already read. A damaged line followed by a whole one raises :class:`CorruptLogError`;
    damaged bytes at the very end are reported in ``torn`` and not yielded.
    """

    def __init__(self, log: EventLog, start: Position, *, chain: bool) -> None:
        self._log = log
        self.start = start
        self.end = start
        self.torn: TornTail | None = None
        self._chain = chain

    def __iter__(self) -> Iterator[EventType]:
        return map(_second, self.records())  # map, not a generator: one Python frame less per event

    def records(self) -> Iterator[tuple[bytes, EventType]]:
        """The events with their lines exactly as stored (newline excluded)."""
        log = self._log
        path = log.path
        try:
            fd = log.ops.open(path, os.O_RDONLY | log.nofollow)
        except FileNotFoundError:
            if self.start.offset:
                raise CorruptLogError(path, self.start.seq, "the log file is missing") from None
            return
        except OSError as exc:
            raise io_error("read", path, exc) from None
        chain = self._chain
        offset, seq, prev, ts = self.start.offset, self.start.seq, self.start.last_hash, self.start.last_ts
        last_line = b""
        read_at = offset
        pending = b""
        try:
            while True:
                try:
                    chunk = log.ops.pread(fd, _CHUNK, read_at)
                except OSError as exc:
                    raise io_error("read", path, exc) from None
                if not chunk:
                    break
                read_at += len(chunk)
                lines = (pending + chunk if pending else chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if not check_line(line):  # framing and crc: the line checks itself
                        self._stop_at_bad_line(fd, offset, seq + 1, "damaged line (bad framing or crc)")
                        return
                    try:
                        event = decode_event(line)
                    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
                        raise CorruptLogError(path, seq + 1, f"undecodable event: {exc}") from None
                    if event.seq != seq + 1:
                        raise CorruptLogError(path, seq + 1, f"seq is {event.seq}, expected {seq + 1}")
                    if event.v > FORMAT_VERSION:
                        raise CorruptLogError(
                            path,
                            seq + 1,
                            f"format version {event.v} is newer than this code ({FORMAT_VERSION})",
                        )
                    if (chain or not last_line) and event.prev != (
                        line_hash(last_line) if last_line else prev
                    ):
                        raise CorruptLogError(
                            path, seq + 1, "chain broken: prev does not match the line before"
                        )
                    last_line = line
                    offset += len(line) + 1
                    seq = event.seq
                    ts = event.ts
                    yield line, event  # self.end is set once, when the scan stops
            if pending:
                self.torn = TornTail(offset, len(pending), seq + 1)
        finally:
            log.ops.close(fd)
            if last_line:
                self.end = Position(offset, seq, line_hash(last_line), ts)

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
        self.torn = TornTail(bad_offset, len(tail), line_no)


class EventLog:
    """``events.jsonl`` and its lock file: the file backend of the ledger."""

    def __init__(self, path: Path, ops: FileOps, *, follow_symlinks: bool = False) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.ops = ops
        self.nofollow = 0 if follow_symlinks else _NOFOLLOW
        self._fd = OwnedFd(self)
        self._lock = FileLock(ops, self.lock_path)

    # -- reading ---------------------------------------------------------------------------------------

    def scan(self, start: Position = START, *, chain: bool = False) -> Scan:
        """The events after ``start``, checked as :class:`Scan` describes."""
        return Scan(self, start, chain=chain)

    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of the log file, ``None`` if it does not exist: tells when it was replaced."""
        return self.stat()[0]

    def stat(self) -> tuple[tuple[int, int] | None, int]:
        """(identity, size) of the log file with one system call; ``(None, 0)`` if it does not exist."""
        try:
            st = os.stat(self.path, follow_symlinks=not self.nofollow)
        except FileNotFoundError:
            return None, 0
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        return (st.st_dev, st.st_ino), st.st_size

    def size(self) -> int:
        try:
            return os.stat(self.path, follow_symlinks=not self.nofollow).st_size
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise io_error("read", self.path, exc) from None

    def line_before(self, offset: int) -> bytes:
        """The whole line that ends at ``offset`` (newline excluded); used to check a checkpoint."""
        start = max(0, offset - MAX_LINE_BYTES - 1)
        try:
            fd = self.ops.open(self.path, os.O_RDONLY | self.nofollow)
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        try:
            window = self.ops.pread(fd, offset - start, start)
        finally:
            self.ops.close(fd)
        if len(window) != offset - start or not window.endswith(b"\n"):
            return b""
        return window[:-1].rsplit(b"\n", 1)[-1]

    # -- writing ---------------------------------------------------------------------------------------

    def locked(self, *, shared: bool = False) -> contextlib.AbstractContextManager[None]:
        """Hold the writer lock (``flock`` on ``events.jsonl.lock``), freed if the holder dies. Shared, it
        keeps writers out while the end of the log is read, so a reader never takes in a line that is
        written but not yet fsynced."""
        return self._lock.held(shared=shared)

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

    def _append_fd(self) -> int:
        fd = self._fd.get()
        if fd is None:
            try:
                fd = self._fd.fd = self.ops.open(self.path, os.O_WRONLY | os.O_APPEND | self.nofollow)
            except OSError as exc:
                raise io_error("open for appending", self.path, exc) from None
        return fd

    def append(self, data: bytes, end: int) -> None:
        """Append whole lines ``data`` at ``end`` (the current size): one write, then fsync. Under the lock.

        On a failed or short write the file is cut back to ``end`` and :class:`LedgerIOError` is raised. On a
        failed fsync the lines are cut back too (so no reader finds the unacknowledged event afterwards) and
        :class:`DurabilityError` is raised; the caller must stop writing through this handle.
        """
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
        try:
            ops.fsync(fd)
        except OSError as exc:
            self._cut_back(fd, end)
            err = DurabilityError(
                f"cannot append to {self.path}: fsync failed ({exc.strerror or exc}); "
                "the event was not recorded and this ledger handle accepts no more writes"
            )
            err.errno = exc.errno
            raise err from None
        ops.point("log.after_fsync")

    def _cut_back(self, fd: int, end: int) -> None:
        try:
            self.ops.ftruncate(fd, end)
        except OSError as exc:
            # What is left is a torn tail: the next writer sets it aside.
            log.warning("could not cut %s back to %d bytes after a failed append: %s", self.path, end, exc)

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
            fd = ops.open(self.path, os.O_RDONLY | self.nofollow)
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
        self._lock.close()
