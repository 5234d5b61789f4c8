"""The one narrow seam through which the ledger touches files, and the atomic file replace built on it.

Every open, write, sync, truncate, rename and unlink of the log, the snapshot and the checkpoint goes through
a :class:`FileOps` instance. Production code uses the plain one; the fault and crash suites pass a subclass
that fails the k-th operation, records what was synced, or stops the process at a named point
(:meth:`FileOps.point`). Nothing else in the ledger calls ``os`` for these operations.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from ledger.errors import io_error

__all__ = ("TEMP_MARK", "Extent", "FileLock", "FileOps", "OwnedFd", "atomic_write", "file_kind", "temp_files")

TEMP_MARK = ".tmp-"
"""Temp files are named ``<target name>.tmp-<random>`` in the target's directory."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CHUNK = 1 << 20
_SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words (``"a FIFO (named pipe)"``, ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _not_regular(path: Path, mode: int) -> OSError:
    """The error for a path that is not a regular file: its ``strerror`` says what it is instead."""
    return OSError(errno.EINVAL, f"it is {file_kind(mode)}, not a regular file (refused)", str(path))


class FileOps:
    """Thin wrappers over ``os``; override any of them to inject faults."""

    def open(self, path: Path, flags: int, mode: int = 0o666) -> int:
        return os.open(path, flags | _CLOEXEC, mode)

    def write(self, fd: int, data: bytes | bytearray) -> int:
        return os.write(fd, data)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def stat(self, path: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        return os.stat(path, follow_symlinks=follow_symlinks)

    def listdir(self, directory: Path) -> list[str]:
        return os.listdir(directory)

    def next_data(self, fd: int, offset: int) -> int:
        """Where the first byte the file system stores at or after ``offset`` is: ``offset`` itself unless
        it lies in a hole (a run of zeros the file system does not store, as ``truncate -s +N`` leaves);
        the file's size if only a hole follows. Where holes cannot be asked for, ``offset``. (Moves the
        descriptor's position: the ledger reads with ``pread`` only.)"""
        try:
            return os.lseek(fd, offset, _SEEK_DATA) if _SEEK_DATA is not None else offset
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from offset on
                return max(offset, os.fstat(fd).st_size)
            return offset

    def fchmod(self, fd: int, mode: int) -> None:
        os.fchmod(fd, mode)

    def fchown(self, fd: int, uid: int, gid: int) -> None:
        os.fchown(fd, uid, gid)

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def point(self, name: str) -> None:
        """A named moment in a write (``"log.after_write"``, ``"snapshot.before_rename"``, ...).

        Does nothing here; the crash suite overrides it to kill the process exactly there.
        """

    # Composite operations, built only from the primitives above.

    def fsync_dir(self, directory: Path) -> None:
        """fsync a directory, so that a file created or renamed in it survives a power loss."""
        fd = self.open(directory, os.O_RDONLY | _DIRECTORY)
        try:
            self.fsync(fd)
        finally:
            self.close(fd)

    def make_dirs(self, directory: Path) -> bool:
        """Create ``directory`` and any missing parents, fsyncing the parent of each one created (so every
        new directory entry on the way survives a power loss). Returns whether ``directory`` was created."""
        missing: list[Path] = []
        path = Path(directory)
        while not os.path.lexists(path):
            missing.append(path)
            if path.parent == path:
                break
            path = path.parent
        for new in reversed(missing):
            try:
                self.mkdir(new)
            except FileExistsError:
                continue  # made meanwhile by another process, which fsyncs its parent
            self.fsync_dir(new.parent)
        return bool(missing)

    def open_regular(self, path: Path, flags: int, mode: int = 0o666) -> int:
        """``open`` made safe for a file that should be a regular file and may not be: non-blocking, so a
        FIFO in its place cannot block the open, and then checked with ``fstat``; anything but a regular
        file raises ``OSError(EINVAL)`` whose ``strerror`` says what it is. (Add ``O_NOFOLLOW`` to
        ``flags`` to refuse a symbolic link too.) A missing file raises ``FileNotFoundError``."""
        try:
            fd = self.open(path, flags | _NONBLOCK, mode)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: a FIFO without a reader opened for writing, or a socket
                raise
            raise _not_regular(path, os.lstat(path).st_mode) from None
        try:
            st = self.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _not_regular(path, st.st_mode)
        except BaseException:
            self.close(fd)
            raise
        return fd

    def read_regular(self, path: Path, max_size: int, *, follow_symlinks: bool = False) -> bytes:
        """The whole content of the regular file at ``path``, which holds at most ``max_size`` bytes: how
        every ledger file is read whole.

        Opened by :meth:`open_regular` (so a FIFO or device in its place is refused at once rather than
        blocking or reading forever; a symbolic link is refused unless ``follow_symlinks``), and never
        more than ``max_size + 1`` bytes read: a larger file raises ``OSError(EFBIG)``. Errors are
        ``OSError`` with a ``strerror`` that says what is wrong; a missing file is ``FileNotFoundError``.
        """
        fd = self.open_regular(path, os.O_RDONLY | (0 if follow_symlinks else _NOFOLLOW))
        try:
            chunks: list[bytes] = []
            size = 0
            while size <= max_size and (chunk := self.pread(fd, min(_CHUNK, max_size + 1 - size), size)):
                chunks.append(chunk)
                size += len(chunk)
        finally:
            self.close(fd)
        if size > max_size:
            raise OSError(errno.EFBIG, f"it is larger than {max_size} bytes (refused)", str(path))
        return b"".join(chunks)

    def write_all(self, fd: int, data: bytes | bytearray) -> None:
        """Write all of ``data`` to a fresh file, continuing after short writes (never used for the log)."""
        done = 0
        while done < len(data):
            written = self.write(fd, data[done:] if done else data)
            if written <= 0:
                raise OSError(errno.EIO, f"write made no progress ({written})")
            done += written


class Extent(NamedTuple):
    """``size`` bytes of an open file ``fd`` from ``offset``: what :func:`atomic_write` copies in chunks of
    1 MiB (memory stays one chunk whatever the size)."""

    fd: int
    offset: int
    size: int

    def chunks(self, ops: FileOps) -> Iterator[bytes]:
        """The bytes in chunks of at most 1 MiB, read through ``ops``; a short file ends them early. A hole
        in the file comes as chunks of zeros made in memory, not read."""
        at, end = self.offset, self.offset + self.size
        while at < end:
            stored = ops.next_data(self.fd, at)
            if stored > at:
                size = min(_CHUNK, stored - at, end - at)
                yield bytes(size)
                at += size
                continue
            chunk = ops.pread(self.fd, min(_CHUNK, end - at), at)
            if not chunk:
                return
            yield chunk
            at += len(chunk)


def _copy(ops: FileOps, fd: int, extent: Extent) -> None:
    """Write ``extent`` to the fresh file ``fd``. A chunk of zeros is left a hole (the size is set at the
    end), so a long run of zeros, as a power loss can leave, costs no disk in the copy either."""
    at = 0
    for chunk in extent.chunks(ops):
        if chunk != bytes(len(chunk)):
            done = 0
            while done < len(chunk):
                written = ops.pwrite(fd, chunk[done:] if done else chunk, at + done)
                if written <= 0:
                    raise OSError(errno.EIO, f"write made no progress ({written})")
                done += written
        at += len(chunk)
    if at != extent.size:
        raise OSError(errno.EIO, f"the file to copy ended after {at} of {extent.size} bytes")
    ops.ftruncate(fd, at)


class _Process:
    """This process's id, kept current across ``fork`` without a system call per look."""

    pid = os.getpid()

    @classmethod
    def forked(cls) -> None:
        cls.pid = os.getpid()


os.register_at_fork(after_in_child=_Process.forked)


class OwnedFd:
    """A file descriptor that belongs to one object and is closed when that object is garbage-collected
    (``weakref.finalize``), so a handle that is never closed does not leak it. After a fork the child
    forgets the parent's descriptor instead of sharing it (and, for a lock, the lock)."""

    __slots__ = ("fd", "pid")

    def __init__(self, owner: object) -> None:
        self.fd: int | None = None
        self.pid = _Process.pid
        weakref.finalize(owner, self.close)

    def get(self) -> int | None:
        if self.pid != _Process.pid:
            self.fd, self.pid = None, _Process.pid
        return self.fd

    def close(self) -> None:
        if self.fd is not None and self.pid == _Process.pid:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None


class FileLock:
    """An ``flock`` on a lock file, exclusive (writers) or shared (readers), and a mutex between the threads
    of one process.

    ``flock`` locks belong to an open file description, so the kernel frees them when the holder dies
    (even by SIGKILL), and two handles in one process exclude each other. A forked child reopens the file
    rather than share its parent's description (and so its lock). A shared lock needs no write access: where
    the lock file does not exist (no writer has ever run) or cannot be opened, it is taken as held.
    """

    def __init__(self, ops: FileOps, path: Path) -> None:
        self.ops = ops
        self.path = path
        self._fd = OwnedFd(self)
        self._mutex = threading.Lock()

    def acquire(self, *, shared: bool = False, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` only if nobody holds it. Returns whether it was taken. Raises
        ``LedgerIOError`` if an exclusive lock's file cannot be opened."""
        if not self._mutex.acquire(blocking=wait):
            return False
        try:
            fd = self._fd.get()
            if fd is None:
                try:
                    if shared:
                        fd = self.ops.open(self.path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
                    else:
                        fd = self.ops.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o666)
                except OSError as exc:
                    if shared:
                        return True  # nobody can be writing through a lock file we cannot open
                    raise io_error("open the lock file", self.path, exc) from None
                self._fd.fd = fd
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                self._mutex.release()
                return False
            return True
        except BaseException:
            self._mutex.release()
            raise

    def release(self) -> None:
        try:
            if self._fd.fd is not None:
                fcntl.flock(self._fd.fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def held(self, *, shared: bool = False) -> _Held:
        """The lock as a context manager: ``with lock.held(): ...``."""
        return _Held(self, shared)

    def close(self) -> None:
        with self._mutex:
            self._fd.close()


def lock_is_held(ops: FileOps, path: Path) -> bool:
    """Whether some process holds an ``flock`` on ``path`` (shared or exclusive), found without waiting and
    without creating anything: a missing lock file is held by nobody."""
    try:
        fd = ops.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        ops.close(fd)  # closing lets go of a lock this look took
    return False


class _Held:
    __slots__ = ("lock", "shared")

    def __init__(self, lock: FileLock, shared: bool) -> None:
        self.lock, self.shared = lock, shared

    def __enter__(self) -> None:
        self.lock.acquire(shared=self.shared)

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def temp_files(target: Path) -> list[Path]:
    """Temp files that an interrupted :func:`atomic_write` of ``target`` may have left behind."""
    prefix = target.name + TEMP_MARK
    try:
        names = os.listdir(target.parent)
    except FileNotFoundError:
        return []
    return sorted(target.parent / name for name in names if name.startswith(prefix))


def _keep_mode(ops: FileOps, fd: int, existing: os.stat_result) -> None:
    """Give the temp file ``fd`` the permission bits and group of the file it is to replace."""
    ops.fchmod(fd, stat.S_IMODE(existing.st_mode))
    if existing.st_gid != os.getegid():
        try:
            ops.fchown(fd, -1, existing.st_gid)
        except PermissionError:
            pass  # not a member of that group: the mode is kept, the group is the process's


def atomic_write(
    ops: FileOps, target: Path, data: bytes | bytearray | Extent, *, label: str = "file", durable: bool = True
) -> None:
    """Replace ``target`` with ``data`` (bytes, or an :class:`Extent` of an open file, copied) so that a
    crash leaves either the old file or the new one, whole.

    A temp file in the same directory (created exclusively, never through a symlink), written, fsynced,
    renamed over ``target``, then the directory fsynced. The new file keeps the mode (and, where the
    process may set it, the group) of the file it replaces, so an operator's ``chmod 644`` survives every
    write; a file that did not exist follows the umask. On any error the temp file is removed; an error
    raised while cleaning up never hides the first one. ``label`` names the crash points
    (``<label>.before_rename``, ...).

    ``durable=False`` skips both fsyncs, for a file that is only a cache and is validated when read: a
    process crash still leaves the old or the new file whole; a power loss may leave the old one, or an
    empty or partial file that fails validation.
    """
    try:
        existing: os.stat_result | None = os.stat(target)
    except OSError:
        existing = None  # a new file: its mode follows the umask
    temp = target.with_name(f"{target.name}{TEMP_MARK}{os.urandom(6).hex()}")
    fd = ops.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    try:
        try:
            if existing is not None:
                _keep_mode(ops, fd, existing)
            if isinstance(data, Extent):
                _copy(ops, fd, data)
            else:
                ops.write_all(fd, data)
            ops.point(f"{label}.temp_written")
            if durable:
                ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.point(f"{label}.before_rename")
        ops.replace(temp, target)
    except BaseException:
        try:
            ops.unlink(temp)
        except OSError:
            pass  # the first error is the one to report
        raise
    ops.point(f"{label}.after_rename")
    if durable:
        ops.fsync_dir(target.parent)
