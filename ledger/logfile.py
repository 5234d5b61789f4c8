"""``events.jsonl`` itself: the descriptors a handle keeps on it, and its byte-level reads and writes.

A :class:`LogFile` knows the file, not its format's rules beyond one line: how big it is and which file it
is (:meth:`~LogFile.stat`), the whole line that ends at an offset (:meth:`~LogFile.line_before`,
:meth:`~LogFile.head_at`), one write of whole lines at the end (:meth:`~LogFile.write`, cut back when it
fails), and the two descriptors a writer keeps open (one to append, one to read). The scan, the fsynced-size
record, recovery and group commit build on it; every call to the OS goes through :mod:`ledger.fileops`.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import msgspec

from ledger.backend import GENESIS, Head
from ledger.errors import LedgerIOError, StaleHeadError, io_error, symlink_refused
from ledger.events import MAX_LINE_BYTES, check_line, decode_event, line_hash
from ledger.fileops import FileOps, OwnedFd, file_kind

__all__ = ("CHUNK", "NONBLOCK", "Identity", "LogFile", "cut_back")

log = logging.getLogger("ledger")

CHUNK: Final = 1 << 20
"""How much of a file is read at a time."""
NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)

Identity = tuple[int, int]
"""(device, inode): which file a path named when it was looked at."""


def cut_back(ops: FileOps, fd: int, end: int, path: Path) -> None:
    """Truncate ``fd`` (the file at ``path``) to ``end`` bytes after a failed write. A failure is only
    logged: what is left is a torn tail (or staged lines that do not continue the log), which the next
    writer sets aside or drops."""
    try:
        ops.ftruncate(fd, end)
    except OSError as exc:
        log.warning("could not cut %s back to %d bytes: %s", path, end, exc)


class LogFile:
    """The log file at ``path``, reached through ``ops``; a symbolic link is refused unless
    ``follow_symlinks``."""

    def __init__(self, path: Path, ops: FileOps, *, follow_symlinks: bool = False) -> None:
        self.path = path
        self.ops = ops
        self.nofollow = 0 if follow_symlinks else _NOFOLLOW
        self._append = OwnedFd(self)
        self._append_id: Identity | None = None
        """The file ``_append`` was opened on: :meth:`follow` reopens it when the path names another (the
        log was replaced), so no line goes to an unlinked file."""
        self._read = OwnedFd(self)
        """The log open for reading, for the write path (kept open: a writer reads the log at every commit
        that follows another writer's)."""
        self._read_id: Identity | None = None

    def stat(self) -> tuple[Identity | None, int]:
        """(identity, size) of the log file with one system call; ``(None, 0)`` if it does not exist."""
        try:
            st = self.ops.stat(self.path, follow_symlinks=not self.nofollow)
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

    def open_for_reading(self) -> int:
        """A new descriptor of the log for reading (the caller closes it); ``FileNotFoundError`` if there
        is no log, :class:`LedgerIOError` for any other failure."""
        try:
            return self.ops.open_regular(self.path, os.O_RDONLY | self.nofollow)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise io_error("read", self.path, exc) from None

    def reader(self) -> int:
        """The writer's descriptor of the log, open for reading; opened on first use (and again after
        :meth:`follow` found the log replaced)."""
        fd = self._read.get()
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
            self._read.fd, self._read_id = fd, (st.st_dev, st.st_ino)
        return fd

    def appender(self) -> int:
        """The descriptor the log is appended through; opened on first use."""
        fd = self._append.get()
        if fd is None:
            try:
                fd = self._append.fd = self.ops.open_regular(
                    self.path, os.O_WRONLY | os.O_APPEND | self.nofollow, 0o666
                )
            except OSError as exc:
                raise io_error("open for appending", self.path, exc) from None
            st = self.ops.fstat(fd)  # once per open: which file it is (follow compares the path's)
            self._append_id = (st.st_dev, st.st_ino)
        return fd

    def follow(self, identity: Identity | None) -> None:
        """The path names the file ``identity`` now: let go of descriptors opened on another (the log was
        replaced), so the next read and write go to the one in place."""
        if identity != self._read_id:
            self._read.close()
        if identity != self._append_id and self._append_id is not None:
            self._append.close()
            self._append_id = None

    def write(self, data: bytes, end: int) -> None:
        """Append whole lines ``data`` at ``end`` (the current size) with one write. On a failed or short
        write the file is cut back to ``end`` and :class:`LedgerIOError` is raised."""
        fd = self.appender()
        ops = self.ops
        ops.point("log.before_write")
        try:
            written = ops.write(fd, data)
        except OSError as exc:
            cut_back(ops, fd, end, self.path)
            raise io_error("append to", self.path, exc) from None
        if written != len(data):
            cut_back(ops, fd, end, self.path)
            raise LedgerIOError(f"cannot append to {self.path}: short write ({written} of {len(data)} bytes)")
        ops.point("log.after_write")

    def fsync_for_reader(self, fd: int) -> None:
        """fsync the log, open for reading as ``fd``: a reader about to read what the fsynced-size record
        does not vouch for makes it durable first."""
        try:
            self.ops.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS):  # nothing to sync there
                raise io_error("fsync", self.path, exc) from None

    def line_before(self, offset: int, fd: int | None = None) -> bytes:
        """The whole line that ends at ``offset`` (newline excluded); ``b""`` if none does. With ``fd``, read
        through that descriptor of the log, left open."""
        own = fd is None
        try:
            if fd is None:
                fd = self.ops.open(self.path, os.O_RDONLY | self.nofollow | NONBLOCK)
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

    def lines_backward(self, end: int, *, chunk: int = 1 << 16) -> Iterator[bytes]:
        """The lines that end at or before ``end`` (a line boundary: after a newline), newest first, each
        without its newline, read ``chunk`` bytes at a time from ``end`` towards the start as the caller
        takes them. Bytes, not events: the caller checks each line. A piece that runs past the longest a
        line may be without a newline is yielded as it is (it fails its check) and the reading stops."""
        if end <= 0:
            return
        try:
            fd = self.ops.open(self.path, os.O_RDONLY | self.nofollow | NONBLOCK)
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        try:
            # the newline at ``end - 1`` ends the newest line; ``carry``: the bytes after the last one seen
            at, carry = end - 1, b""
            while at > 0:
                start = max(0, at - chunk)
                data = self.ops.pread(fd, at - start, start)
                if len(data) != at - start:
                    raise StaleHeadError(f"{self.path} was cut short while it was read: read it again")
                at = start
                pieces = (data + carry).split(b"\n")
                carry = pieces[0]
                yield from reversed(pieces[1:])
                if len(carry) > MAX_LINE_BYTES:
                    yield carry
                    return
            yield carry  # the first line of the file
        except OSError as exc:
            raise io_error("read", self.path, exc) from None
        finally:
            self.ops.close(fd)

    def head_at(self, offset: int, fd: int | None = None) -> Head | None:
        """The place after the whole line that ends at ``offset`` (its event's seq, hash and time, and
        ``offset`` as the bookmark); ``None`` if no whole event line ends there. Read through ``fd`` if
        given (a writer's descriptor of the log)."""
        if offset == 0:
            return GENESIS
        line = self.line_before(offset, fd)
        if not line or not check_line(line):
            return None
        try:
            event = decode_event(line)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            return None
        return Head(event.seq, line_hash(line), event.ts, offset)

    def close(self) -> None:
        self._append.close()
        self._read.close()
