"""Fault injection through the ledger's own file-operation seam (``ledger.fileops.FileOps``).

Nothing under test is mocked: the ledger runs as it does in production, and only the primitive file
operations it calls (open, write, fsync, ftruncate, replace, unlink, ...) fail, or stop the process,
exactly where the real kernel could.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

from ledger.fileops import FileOps

SHORT = "short"
"""A fault kind: the write stores only half its bytes and reports that."""


class FaultyOps(FileOps):
    """Records every primitive operation in ``trace``; once ``arm``\\ ed, fails the ``k``-th of them
    (counting from 1 among the names in ``only``) and, with ``forever``, every later one.

    A failure is ``OSError(err)``; with ``err=SHORT`` a write stores half its bytes and returns that count.
    """

    def __init__(
        self, k: int = 0, *, err: int | str = errno.EIO, only: tuple[str, ...] = (), forever: bool = False
    ) -> None:
        self.k, self.err, self.only, self.forever = k, err, only, forever
        self.trace: list[str] = []
        self.count = 0
        self.armed = False
        self.fired: list[str] = []

    def arm(self) -> FaultyOps:
        self.armed, self.count, self.trace = True, 0, []
        return self

    def _fault(self, name: str) -> bool:
        """Whether this operation is to fail; raises for every kind but a short write."""
        self.trace.append(name)
        if not self.armed or (self.only and name not in self.only):
            return False
        self.count += 1
        if self.count != self.k and not (self.forever and self.count > self.k):
            return False
        self.fired.append(name)
        if self.err == SHORT and name in ("write", "pwrite"):
            return True
        code = errno.EIO if self.err == SHORT else self.err
        assert isinstance(code, int)
        raise OSError(code, os.strerror(code))

    def open(self, path: Path, flags: int, mode: int = 0o666) -> int:
        self._fault("open")
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        if self._fault("write"):
            return super().write(fd, data[: max(1, len(data) // 2)])
        return super().write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self._fault("pwrite"):
            return super().pwrite(fd, data[: max(1, len(data) // 2)], offset)
        return super().pwrite(fd, data, offset)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._fault("pread")
        return super().pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        self._fault("fsync")
        super().fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._fault("ftruncate")
        super().ftruncate(fd, size)

    def close(self, fd: int) -> None:
        super().close(fd)  # a failing close(2) still releases the descriptor
        self._fault("close")

    def replace(self, src: Path, dst: Path) -> None:
        self._fault("replace")
        super().replace(src, dst)

    def unlink(self, path: Path) -> None:
        self._fault("unlink")
        super().unlink(path)


class KillAt(FileOps):
    """SIGKILLs its own process the ``n``-th time the ledger reaches the named point (or any of the points
    in ``"a|b"``)."""

    def __init__(self, point: str, n: int = 1) -> None:
        self.targets, self.n, self.seen = frozenset(point.split("|")), n, 0

    def point(self, name: str) -> None:
        if name in self.targets:
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGKILL)


def temp_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)
