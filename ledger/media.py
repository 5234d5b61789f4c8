"""The video files: the one ``localPath`` rule, a file's size and digest, and the check of recorded files.

A ``localPath`` is the path the app gets: relative to the ledger directory (the root ``verify --files``
starts at), never leaving it (:func:`path_problem`). A writer's path is checked before it is recorded
(:func:`app_path`); a recorded one before any file is opened (:func:`check_file`), which also keeps every
read inside the root and to regular files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ledger import disclosure
from ledger.errors import InvalidEntryError
from ledger.events import FORMAT_VERSION, GENESIS_HASH, EventType, Ready
from ledger.fileops import FileOps
from projections import entries as entries_view
from projections import files as files_view

__all__ = (
    "VIDEO_SUFFIXES",
    "FilesReport",
    "app_path",
    "check_file",
    "file_digest",
    "path_problem",
    "verify_files",
)

VIDEO_SUFFIXES: Final = frozenset({".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi"})

_CHUNK: Final = 1 << 20
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True, slots=True)
class FilesReport:
    """What :meth:`Ledger.verify_files <ledger.store.Ledger.verify_files>` found: one line per problem."""

    checked: int
    problems: list[str]
    unreferenced: list[Path]

    @property
    def ok(self) -> bool:
        return not self.problems


def path_problem(local_path: str) -> Literal["nul", "absolute", "parent"] | None:
    """What breaks the ``localPath`` rule in ``local_path``, if anything: a NUL byte, an absolute path, or
    one that leaves the root through ``..``."""
    if os.path.isabs(local_path):
        return "absolute"
    if os.path.normpath(local_path).split(os.sep)[0] == os.pardir:
        return "parent"
    return "nul" if "\0" in local_path else None


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Size and SHA-256 (hex) of the file at ``path``, read in 1 MiB chunks (a video of any size)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def app_path(root: str | os.PathLike[str], path: str | os.PathLike[str], local_path: str | None) -> str:
    """The ``localPath`` to record for the video at ``path``: ``local_path`` if given, else ``path``
    relative to ``root`` (the ledger directory, where ``verify --files`` starts). Either way it must be a
    relative path that stays under the root: an absolute one, one that leaves the root through ``..``, or a
    file outside the root without ``local_path``, raises :class:`~ledger.errors.InvalidEntryError`, so a
    host path never lands in the app's file."""
    # The messages name no host path: a failed attempt records its error in the app's file.
    if local_path is not None:
        problem = path_problem(local_path)
        if problem == "absolute":
            raise InvalidEntryError(
                "local_path is absolute: give it relative to the ledger directory "
                "(as the app and `verify --files` see it)"
            )
        if problem == "parent":
            raise InvalidEntryError(f"local_path {local_path!r} leaves the ledger directory through '..'")
        return local_path
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if _leaves(real_root, real):
        raise InvalidEntryError(
            f"the video {Path(path).name!r} is outside the ledger directory: pass local_path= (the path "
            "the app gets, relative to the ledger directory) so that no host path is recorded"
        )
    return Path(os.path.relpath(real, real_root)).as_posix()


def verify_files(
    events: Iterable[EventType],
    *,
    ops: FileOps,
    root: Path,
    media: str | os.PathLike[str] | None = None,
    c2pa: bool = False,
    trust_anchors: str | os.PathLike[str] | None = None,
) -> FilesReport:
    """Check the file of every entry that ``events`` leave ready, under ``root``, against the size and
    SHA-256 recorded when it became ready; with ``media``, also list the video files under that folder that
    no entry refers to; with ``c2pa`` (the ``c2pa`` extra), also that each intact file's C2PA manifest
    validates (and, with ``trust_anchors``, a PEM file of roots, leads to one of them), says AI-generated
    and names its entry and attempt (:func:`_disclosure_problem`)
    (:meth:`Ledger.verify_files <ledger.store.Ledger.verify_files>`)."""
    if c2pa:
        disclosure.require_c2pa()  # the optional extra: say how to get it before reading anything
    real_root = os.path.realpath(root)
    entries: entries_view.Entries = {}
    files: files_view.ReadyFiles = {}
    for event in events:
        entries[event.key] = entries_view.apply(entries.get(event.key), event)
        files_view.note(files, event)
    problems: list[str] = []
    for key in sorted(files):
        ready = files[key]
        problem = check_file(ops, real_root, ready)
        if problem is None and c2pa:  # the file is the one recorded: its manifest is worth reading
            problem = _disclosure_problem(real_root, ready, trust_anchors)
        if problem is not None:
            problems.append(f"{key[0]}/{key[1]}: {ready.local_path}: {problem}")
    unreferenced: list[Path] = []
    if media is not None:
        referenced = {
            os.path.normpath(root / e.local_path) for e in entries.values() if e.local_path is not None
        }
        for dirpath, _, names in os.walk(media):
            for name in sorted(names):
                candidate = Path(dirpath) / name
                if (
                    candidate.suffix.lower() in VIDEO_SUFFIXES
                    and os.path.normpath(candidate) not in referenced
                ):
                    unreferenced.append(candidate)
        problems.extend(f"{p}: not referred to by any entry" for p in sorted(unreferenced))
    return FilesReport(checked=len(files), problems=problems, unreferenced=sorted(unreferenced))


def _disclosure_problem(root: str, ready: Ready, trust_anchors: str | os.PathLike[str] | None) -> str | None:
    """What is wrong with the C2PA manifest of the (intact) file ``ready`` recorded: it must name the entry
    and attempt, or for a reused video the attempt that made it (``reuses``)."""
    made = ready.reuses
    if made is None:
        spot, era, attempt = ready.spot_id, ready.era_id, ready.attempt
    else:
        spot, era, attempt = made.spot_id, made.era_id, made.attempt
    where = os.path.join(root, ready.local_path)
    return disclosure.check_disclosure(where, spot, era, attempt, trust_anchors=trust_anchors)


def recorded_file_problem(
    local_path: str, size: int | None, sha256: str | None, *, ops: FileOps, root: str | os.PathLike[str]
) -> str | None:
    """What is wrong with the file at ``local_path`` under ``root`` against the ``size`` and ``sha256`` a
    ``ready`` recorded of it (:func:`check_file`), or ``None``."""
    ready = Ready(
        FORMAT_VERSION, 1, "", "", "", GENESIS_HASH, local_path=local_path, size=size, sha256=sha256
    )
    return check_file(ops, os.path.realpath(root), ready)  # only the file's members are read


def check_file(ops: FileOps, root: str, ready: Ready) -> str | None:
    """What is wrong with the file a ``ready`` event recorded, looked for under ``root`` (a real path), or
    ``None``. Nothing outside ``root`` and nothing but a regular file is opened or measured."""
    problem = path_problem(ready.local_path)
    if problem == "nul":  # writers refuse it; a line written by hand may hold one
        return "holds a NUL byte, which no file name can (not read)"
    if problem == "absolute":
        return f"an absolute path, outside the root {root} (not read)"
    if problem == "parent":
        return f"leaves the root {root} through '..' (not read)"
    real = os.path.realpath(os.path.join(root, ready.local_path))
    if _leaves(root, real):
        return f"a symbolic link to {real}, outside the root {root} (not read)"
    try:
        fd = ops.open_regular(Path(real), os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    try:
        return _compare(ops, fd, ready)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        ops.close(fd)


def _compare(ops: FileOps, fd: int, ready: Ready) -> str | None:
    """What differs between the open file ``fd`` and what ``ready`` recorded of it (no more than the
    recorded size + 1 bytes are read)."""
    size = ops.fstat(fd).st_size
    expected = size if ready.size is None else ready.size
    if size != expected:
        return f"size is {size} bytes, {expected} when it became ready"
    if ready.sha256 is None:
        return None
    digest, read = hashlib.sha256(), 0
    while read <= expected and (chunk := ops.pread(fd, min(_CHUNK, expected + 1 - read), read)):
        digest.update(chunk)
        read += len(chunk)
    if read != expected:
        return f"size changed while it was read ({read} bytes, {expected} when it became ready)"
    if digest.hexdigest() != ready.sha256:
        return "content changed since it became ready (SHA-256 differs)"
    return None


def _leaves(root: str, path: str) -> bool:
    """Whether ``path`` (absolute, normalised) is outside the directory ``root``."""
    return os.path.commonpath([root, path]) != root
