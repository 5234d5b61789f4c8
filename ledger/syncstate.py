"""The fsynced-size record: how much of ``events.jsonl`` is known to be durable.

The sync lock file ``events.jsonl.sync.lock`` holds one record of 20 bytes: a magic, the log size known
to be fsynced, and the crc-32 of the two. The leader writes it after every fsync of the log
(:meth:`SyncRecord.set`); readers stop there (:meth:`SyncRecord.durable_end`), so they never take in a
line whose fsync is not done; and a damaged line that starts before it is corruption, never a torn tail
(:meth:`SyncRecord.fsynced_part`).

The record is written only after the fsync it reports, so on the same log it never claims more than is
durable, even after a power loss. A missing or damaged record says nothing: then the next writer fsyncs,
and a reader fsyncs the log itself before it reads past the record, which is always safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from typing import Final

from ledger.errors import io_error
from ledger.fileops import OwnedFd
from ledger.logfile import NONBLOCK, LogFile

__all__ = ("SyncRecord", "decode_record")

log = logging.getLogger("ledger")

_RECORD = struct.Struct("<8sQ")
_MAGIC: Final = b"VLSYNC01"
_SIZE: Final = _RECORD.size + 4


def decode_record(data: bytes) -> int | None:
    """The fsynced size in the record ``data`` (the sync lock file's bytes), ``None`` unless it is intact."""
    if len(data) != _SIZE or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        return None
    magic, flushed = _RECORD.unpack(data[:-4])
    return int(flushed) if magic == _MAGIC else None


class SyncRecord:
    """The fsynced-size record of the log ``file``, in ``events.jsonl.sync.lock`` beside it."""

    def __init__(self, file: LogFile) -> None:
        self.file = file
        self.path = file.path.with_name(file.path.name + ".sync.lock")
        self._writable = OwnedFd(self)
        """Open for reading and writing: a writer's, opened (and created) under the sync lock."""
        self._readable = OwnedFd(self)
        """Open for reading only: a reader's, which creates nothing."""

    def flushed(self) -> int:
        """How much of the log is known to be fsynced (0 when the record is missing or damaged: then the
        next writer fsyncs, which is always safe). Under the sync lock."""
        try:
            data = self.file.ops.pread(self._writer_fd(), _SIZE, 0)
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        flushed = decode_record(data)
        return 0 if flushed is None else flushed

    def set(self, size: int, *, keep_same: bool = False) -> None:
        """Record that the log is fsynced up to ``size`` bytes (``keep_same``: leave the file untouched when
        it says so already, so an open that records nothing leaves every file as it was). If the record
        cannot be written, none is left: the old one would make readers stop before the lines just
        acknowledged (with none, readers fsync the log themselves and read it all, and the next writer
        fsyncs again)."""
        record = _RECORD.pack(_MAGIC, size)
        record += zlib.crc32(record).to_bytes(4, "little")
        fd = None
        ops = self.file.ops
        try:
            fd = self._writer_fd()
            if keep_same and ops.pread(fd, len(record) + 1, 0) == record:
                return
            ops.pwrite(fd, record, 0)
        except OSError as exc:
            with contextlib.suppress(OSError):
                if fd is not None:
                    ops.ftruncate(fd, 0)
            log.warning("could not record in %s that the log is fsynced: %s", self.path, exc)

    def recorded(self) -> int | None:
        """The fsynced size on record, ``None`` if there is no intact record. Opens nothing for writing."""
        fd = self._writable.get()
        if fd is None:
            fd = self._readable.get()
        if fd is None:
            try:
                fd = self._readable.fd = self.file.ops.open(
                    self.path, os.O_RDONLY | self.file.nofollow | NONBLOCK
                )
            except OSError:  # missing (no writer ever ran) or unreadable: no record
                return None
        try:
            return decode_record(self.file.ops.pread(fd, _SIZE, 0))
        except OSError:
            return None

    def replaced(self) -> bool:
        """Whether the record file this reader holds open was removed (and perhaps made anew by a writer):
        then it is closed, for the next read to open the file now in place. Asked only when the record
        stops short of the log, so a reader pays nothing for it otherwise."""
        fd = self._readable.get()
        if fd is None or self._writable.get() is not None:
            return False
        try:
            gone = self.file.ops.fstat(fd).st_nlink == 0
        except OSError:
            gone = True
        if gone:
            self._readable.close()
        return gone

    def fsynced_part(self, size: int) -> int:
        """How many bytes at the start of the log (``size`` bytes now) are known to have been fsynced: the
        record, when it is intact and no larger than the log; else 0 (nothing is known).

        A record larger than the log belongs to another file (a copy taken while a writer appended, a log
        put back from a backup) and says nothing. Replacing ``events.jsonl`` by a longer file while the
        record stays is the one case it cannot tell: docs/format.md says to remove the record with it."""
        recorded = self.recorded()
        return recorded if recorded is not None and recorded <= size else 0

    def durable_end(self, start: int, size: int) -> int | None:
        """Under the sync lock shared (no leader is between its write and its fsync), for a reader at offset
        ``start`` of a log last seen ``size`` bytes long: where to stop reading.

        Normally the fsynced size on record: lines beyond it were written by a leader that died before its
        fsync (the next writer fsyncs them), and a reader does not take them in. Where the record cannot say
        (missing, damaged, larger than the log, or behind ``start``), the reader fsyncs the log itself and
        may read all of it: ``None``."""
        recorded = self.recorded()
        if recorded is not None and recorded < size and self.replaced():
            recorded = self.recorded()
        if recorded is not None and recorded > size:
            size = self.file.size()  # the log grew between the caller's look and the lock
        if recorded is not None and start <= recorded <= size:
            return recorded
        file = self.file
        try:
            fd = file.ops.open(file.path, os.O_RDONLY | file.nofollow | NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise io_error("read", file.path, exc) from None
        try:
            file.fsync_for_reader(fd)
        finally:
            file.ops.close(fd)
        return None

    def _writer_fd(self) -> int:
        fd = self._writable.get()
        if fd is None:
            try:
                fd = self._writable.fd = self.file.ops.open_regular(
                    self.path, os.O_RDWR | os.O_CREAT | self.file.nofollow, 0o666
                )
            except OSError as exc:
                raise io_error("open", self.path, exc) from None
        return fd

    def close(self) -> None:
        self._writable.close()
        self._readable.close()
