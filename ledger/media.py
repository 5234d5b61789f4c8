"""The video files: the one ``localPath`` rule, a file's size and digest, and the check of recorded files.

A ``localPath`` is the value the app reads, what the pipeline means it to use: a path relative to a media
root, a URL path the app serves (``/videos/x.mp4``), or an absolute path where that is what it wants. It is
recorded as the pipeline gives it, the same for ``job.ready``, ``generate_and_store_video``, ``set`` and
``import``; given none, a video's path relative to the media root (the ledger directory) is recorded, and
a video outside it is refused rather than have a host path land in the app's file (:func:`app_path`).

``verify --files`` maps a ``localPath`` to a file through one :class:`MediaMap`: the media root (relative
paths start there) and URL prefixes mapped to directories (``/videos/`` to ``static/videos``). It reads
nothing outside the root and the mapped directories, and only regular files; a ``localPath`` it cannot map
(an absolute path no prefix covers, one that leaves its directory through ``..``) is reported as
unchecked, not as damage (:func:`check_file`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ledger.errors import InvalidEntryError
from ledger.events import FORMAT_VERSION, GENESIS_HASH, EventType, Ready
from ledger.fileops import FileOps
from projections import entries as entries_view
from projections import files as files_view

__all__ = (
    "VIDEO_SUFFIXES",
    "FilesReport",
    "MediaMap",
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
    unchecked: list[str] = field(default_factory=list)
    """Entries whose ``localPath`` the map does not place under the root or a mapped prefix (not read)."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class MediaMap:
    """Where ``verify --files`` finds a ``localPath``'s file: relative paths under ``root``, a path that
    starts with one of ``prefixes`` (a URL path such as ``/videos/``) under the directory it is mapped to."""

    root: Path
    prefixes: tuple[tuple[str, Path], ...] = ()

    @classmethod
    def of(
        cls, root: str | os.PathLike[str], prefixes: Mapping[str, str | os.PathLike[str]] | None = None
    ) -> MediaMap:
        """The map of a root and ``{prefix: directory}`` (directories made real, longest prefix first)."""
        pairs = sorted(
            ((k, Path(os.path.realpath(v))) for k, v in (prefixes or {}).items()), key=lambda kv: -len(kv[0])
        )
        for prefix, _ in pairs:
            if not prefix.startswith("/") or not prefix.endswith("/"):
                raise InvalidEntryError(
                    f"a mapped prefix starts and ends with '/' (like /videos/), not {prefix!r}"
                )
        return cls(Path(os.path.realpath(root)), tuple(pairs))

    def place(self, local_path: str) -> tuple[str, str] | None:
        """``(directory, path relative to it)`` for ``local_path``, or ``None`` if it cannot be mapped."""
        base, rest = str(self.root), local_path
        for prefix, directory in self.prefixes:
            if local_path.startswith(prefix):
                base, rest = str(directory), local_path[len(prefix) :]
                break
        else:
            if os.path.isabs(local_path):
                return None
        if not rest or os.path.isabs(rest) or os.path.normpath(rest).split(os.sep)[0] == os.pardir:
            return None
        return base, rest


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
    """The ``localPath`` to record for the video at ``path``: ``local_path`` if given, as given (relative
    to a media root, a URL path such as ``/videos/x.mp4``, or absolute: what the app is to use), else
    ``path`` relative to ``root`` (the ledger directory). A file outside the root without ``local_path``
    raises :class:`~ledger.errors.InvalidEntryError`, so a host path never lands in the app's file unasked."""
    # The messages name no host path: a failed attempt records its error in the app's file.
    if local_path is not None:
        if "\0" in local_path:
            raise InvalidEntryError("local_path holds a NUL byte, which no file name can")
        return local_path
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if _leaves(real_root, real):
        raise InvalidEntryError(
            f"the video {Path(path).name!r} is outside the ledger directory: pass local_path= (the path "
            "the app gets: relative to its media root, or a URL path like /videos/x.mp4) so that no host "
            "path is recorded"
        )
    return Path(os.path.relpath(real, real_root)).as_posix()


def verify_files(
    events: Iterable[EventType],
    *,
    ops: FileOps,
    root: Path | MediaMap,
    media: str | os.PathLike[str] | None = None,
    c2pa: bool = False,
    trust_anchors: str | os.PathLike[str] | None = None,
) -> FilesReport:
    """Check the file of every entry that ``events`` leave ready, found through ``root`` (a
    :class:`MediaMap`, or a root alone), against the size and SHA-256 recorded when it became ready; with
    ``media``, also list the video files under that folder that no entry refers to; with ``c2pa`` (the
    ``c2pa`` extra), also that each intact file's C2PA manifest validates (and, with ``trust_anchors``, a
    PEM file of roots, leads to one of them), says AI-generated and names its entry and attempt
    (:func:`_disclosure_problem`) (:meth:`Ledger.verify_files <ledger.store.Ledger.verify_files>`)."""
    if c2pa:
        from ledger import disclosure  # only here: its imports are a third of a short command's start

        disclosure.require_c2pa()  # the optional extra: say how to get it before reading anything
    where = root if isinstance(root, MediaMap) else MediaMap.of(root)
    root = where.root
    entries: entries_view.Entries = {}
    files: files_view.ReadyFiles = {}
    for event in events:
        if event.type == "policy":  # no entry's event
            continue
        entries[event.key] = entries_view.apply(entries.get(event.key), event)
        files_view.note(files, event)
    problems, unchecked = _check_ready(files, where, ops, trust_anchors if c2pa else None, c2pa=c2pa)
    unreferenced: list[Path] = []
    if media is not None:
        referenced = {
            os.path.abspath(root / e.local_path) for e in entries.values() if e.local_path is not None
        }
        for dirpath, _, names in os.walk(media):
            for name in sorted(names):
                candidate = Path(dirpath) / name
                if (
                    candidate.suffix.lower() in VIDEO_SUFFIXES
                    and os.path.abspath(candidate) not in referenced  # a relative DIR as an absolute root
                ):
                    unreferenced.append(candidate)
        problems.extend(f"{p}: not referred to by any entry" for p in sorted(unreferenced))
    return FilesReport(
        checked=len(files) - len(unchecked), problems=problems, unreferenced=sorted(unreferenced),
        unchecked=unchecked,
    )  # fmt: skip


def _check_ready(
    files: files_view.ReadyFiles,
    where: MediaMap,
    ops: FileOps,
    trust_anchors: str | os.PathLike[str] | None,
    *,
    c2pa: bool,
) -> tuple[list[str], list[str]]:
    """The problems with the ready entries' files, and the entries whose ``localPath`` maps to no file."""
    problems: list[str] = []
    unchecked: list[str] = []
    for key in sorted(files):
        ready = files[key]
        where_said = f"{key[0]}/{key[1]}: {ready.local_path}"
        if "\0" in ready.local_path:  # writers refuse it; a line written by hand may hold one
            problems.append(f"{where_said}: holds a NUL byte, which no file name can (not read)")
            continue
        placed = where.place(ready.local_path)
        if placed is None:
            unchecked.append(f"{where_said}: not under the media root or a mapped prefix")
            continue
        problem = check_file(ops, placed, ready)
        if problem is None and c2pa:  # the file is the one recorded: its manifest is worth reading
            problem = _disclosure_problem(placed, ready, trust_anchors)
        if problem is not None:
            problems.append(f"{where_said}: {problem}")
    return problems, unchecked


def _disclosure_problem(
    placed: tuple[str, str], ready: Ready, trust_anchors: str | os.PathLike[str] | None
) -> str | None:
    """What is wrong with the C2PA manifest of the (intact) file ``ready`` recorded, at ``placed``: it must
    name the entry and attempt, or for a reused video the attempt that made it (``reuses``)."""
    made = ready.reuses
    if made is None:
        spot, era, attempt = ready.spot_id, ready.era_id, ready.attempt
    else:
        spot, era, attempt = made.spot_id, made.era_id, made.attempt
    from ledger import disclosure

    return disclosure.check_disclosure(os.path.join(*placed), spot, era, attempt, trust_anchors=trust_anchors)


def recorded_file_problem(
    local_path: str, size: int | None, sha256: str | None, *, ops: FileOps, root: str | os.PathLike[str]
) -> str | None:
    """What is wrong with the file at ``local_path`` under ``root`` against the ``size`` and ``sha256`` a
    ``ready`` recorded of it (:func:`check_file`), or ``None``."""
    ready = Ready(
        FORMAT_VERSION, 1, "", "", "", GENESIS_HASH, local_path=local_path, size=size, sha256=sha256
    )
    placed = MediaMap.of(root).place(local_path) if "\0" not in local_path else None
    if placed is None:
        return f"not under the root {root} (not read)"
    return check_file(ops, placed, ready)  # only the file's members are read


def check_file(ops: FileOps, placed: tuple[str, str], ready: Ready) -> str | None:
    """What is wrong with the file a ``ready`` event recorded, at ``placed`` (a real directory and a path
    under it, :meth:`MediaMap.place`), or ``None``. Nothing outside that directory and nothing but a
    regular file is opened or measured."""
    root, rest = placed
    real = os.path.realpath(os.path.join(root, rest))
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
