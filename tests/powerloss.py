"""A model of what a power loss can leave on disk, fed by the ledger's own file-operation seam.

``PowerLossOps`` performs every operation for real and mirrors it in a model that knows, for every file,
what has been fsynced and what has not, and for the directory, which names were made durable by a
directory fsync. ``crash_states()`` then lists what the disk may hold after the power goes at that moment:

- each write or truncate since the file's last fsync is kept, dropped (a hole reads as zeros), or replaced
  with garbage of the same length;
- each name created, replaced or removed since the last directory fsync is in its new or its old state
  (its old file with that file's durable content).

This is deliberately more pessimistic than ext4 in data=ordered mode, which orders some of these.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ledger.fileops import FileOps


class PowerCut(BaseException):
    """Raised by every operation once the power is cut: nothing after it reaches the disk."""


@dataclass(eq=False)
class Inode:
    current: bytearray = field(default_factory=bytearray)
    durable: bytes | None = None  # content at the last fsync; None: never synced (the file may be empty)
    pending: list[tuple[str, int, bytes]] = field(
        default_factory=list
    )  # ("write", offset, data) / ("truncate", n, b"")

    def apply(self, op: tuple[str, int, bytes]) -> None:
        kind, at, data = op
        if kind == "write":
            if len(self.current) < at:
                self.current.extend(b"\0" * (at - len(self.current)))
            self.current[at : at + len(data)] = data
        else:
            del self.current[at:]
            self.current.extend(b"\0" * max(0, at - len(self.current)))


@dataclass
class OpenFile:
    inode: Inode | None  # None for a directory
    path: Path
    append: bool
    position: int = 0


class PowerLossOps(FileOps):
    """Does every operation for real and models its durability; cuts the power before operation ``cut_at``."""

    def __init__(self, directory: Path, cut_at: int | None = None) -> None:
        self.directory = directory
        self.cut_at = cut_at
        self.count = 0
        self.cut = False
        self.names: dict[str, Inode] = {}
        self.durable_names: dict[str, Inode] = {}
        self.fds: dict[int, OpenFile] = {}
        for name in sorted(os.listdir(directory)):  # what is there before is durable
            path = directory / name
            if path.is_file():
                inode = Inode(bytearray(path.read_bytes()), path.read_bytes())
                self.names[name] = self.durable_names[name] = inode

    def _step(self) -> None:
        self.count += 1
        if self.cut or (self.cut_at is not None and self.count >= self.cut_at):
            self.cut = True
            raise PowerCut

    def _name(self, path: Path) -> str | None:
        path = Path(path)
        return path.name if path.parent.resolve() == self.directory.resolve() else None

    def open(self, path: Path, flags: int, mode: int = 0o666) -> int:
        self._step()
        fd = super().open(path, flags, mode)
        name = self._name(path)
        if Path(path).resolve() == self.directory.resolve() or name is None:
            self.fds[fd] = OpenFile(None, Path(path), False)
            return fd
        inode = self.names.get(name)
        if inode is None:
            inode = self.names[name] = Inode()
        if flags & os.O_TRUNC:
            inode.pending.append(("truncate", 0, b""))
            inode.apply(("truncate", 0, b""))
        self.fds[fd] = OpenFile(inode, Path(path), bool(flags & os.O_APPEND))
        return fd

    def write(self, fd: int, data: bytes) -> int:
        self._step()
        written = super().write(fd, data)
        f = self.fds[fd]
        assert f.inode is not None
        at = len(f.inode.current) if f.append else f.position
        op = ("write", at, bytes(data[:written]))
        f.inode.pending.append(op)
        f.inode.apply(op)
        f.position = at + written
        return written

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._step()
        written = super().pwrite(fd, data, offset)
        f = self.fds[fd]
        assert f.inode is not None
        op = ("write", offset, bytes(data[:written]))
        f.inode.pending.append(op)
        f.inode.apply(op)
        return written

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._step()
        return super().pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        self._step()
        super().fsync(fd)
        f = self.fds[fd]
        if f.inode is None:
            self.durable_names = dict(self.names)
        else:
            f.inode.durable = bytes(f.inode.current)
            f.inode.pending.clear()

    def ftruncate(self, fd: int, size: int) -> None:
        self._step()
        super().ftruncate(fd, size)
        f = self.fds[fd]
        assert f.inode is not None
        f.inode.pending.append(("truncate", size, b""))
        f.inode.apply(("truncate", size, b""))

    def close(self, fd: int) -> None:
        self._step()
        super().close(fd)
        del self.fds[fd]

    def replace(self, src: Path, dst: Path) -> None:
        self._step()
        super().replace(src, dst)
        source, target = self._name(src), self._name(dst)
        assert source is not None and target is not None
        self.names[target] = self.names.pop(source)

    def unlink(self, path: Path) -> None:
        self._step()
        super().unlink(path)
        name = self._name(path)
        if name is not None:
            self.names.pop(name, None)

    # -- the model's answers ---------------------------------------------------------------------------

    def check_mirror(self) -> None:
        """The model agrees with the real directory (it saw every operation)."""
        real = {
            n: (self.directory / n).read_bytes()
            for n in os.listdir(self.directory)
            if (self.directory / n).is_file()
        }
        assert real == {n: bytes(i.current) for n, i in self.names.items()}

    def crash_state(self, rng: random.Random) -> dict[str, bytes]:
        """One thing the disk may hold if the power went now: file name -> bytes."""
        state: dict[str, bytes] = {}
        for name in sorted(set(self.names) | set(self.durable_names)):
            new, old = self.names.get(name), self.durable_names.get(name)
            inode = new if new is old else rng.choice([new, old])
            if inode is not None:
                state[name] = self._content(inode, rng)
        return state

    @staticmethod
    def _content(inode: Inode, rng: random.Random) -> bytes:
        model = Inode(bytearray(inode.durable or b""))
        for kind, at, data in inode.pending:
            fate = rng.choice(["keep", "drop", "garbage"])
            if fate == "drop":
                continue
            if fate == "garbage" and kind == "write":
                data = rng.randbytes(len(data))
            model.apply((kind, at, data))
        return bytes(model.current)


def materialize(state: dict[str, bytes], directory: Path) -> None:
    directory.mkdir(parents=True)
    for name, data in state.items():
        (directory / name).write_bytes(data)
