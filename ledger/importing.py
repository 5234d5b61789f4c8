"""Importing an existing ``generated-videos.json``: reading and decoding the file, checking its entries.

:func:`read_import` touches no ledger: it reads (at most :data:`MAX_IMPORT_BYTES`), decodes and checks the
file, and returns an :class:`ImportFile`; :meth:`Ledger.import_entries <ledger.store.Ledger.import_entries>`
records it (:func:`ledger.requests.adopt`) and reports an :class:`ImportReport`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from ledger import lifecycle
from ledger.errors import InvalidEntryError, io_error
from ledger.events import VideoMetadata, parse_time, validate_entry
from ledger.fileops import FileOps

__all__ = (
    "IMPORTED_FIELDS",
    "MAX_IMPORT_BYTES",
    "ImportFile",
    "ImportReport",
    "read_import",
    "read_import_stream",
)


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :meth:`Ledger.import_entries <ledger.store.Ledger.import_entries>` did."""

    imported: int
    already_present: int
    dropped: dict[str, int] = field(default_factory=dict)
    """Fields of the imported file the ledger does not keep (``thumbnail``, its ``updatedAt`` ...), each
    with the number of entries that had it, in the order first met."""


@dataclass(frozen=True, slots=True)
class ImportFile:
    """A file to import, read and checked by :func:`read_import`; nothing written yet."""

    entries: tuple[VideoMetadata, ...]
    dropped: dict[str, int] = field(default_factory=dict)
    """As :attr:`ImportReport.dropped`."""


IMPORTED_FIELDS: Final = frozenset(
    ("spotId", "eraId", "prompt", "localPath", "status", "createdAt", "completedAt", "error")
)
"""The fields of an imported entry that its ``imported`` event keeps."""

MAX_IMPORT_BYTES: Final = 1 << 32
"""An import file larger than 4 GiB is refused before it is read (a snapshot of a million entries is
about 300 MB)."""


def read_import(
    source: str | os.PathLike[str] | bytes,
    *,
    ops: FileOps | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ImportFile:
    """Read and check a ``generated-videos.json`` to import (a path, or its bytes) without touching any
    ledger: every entry valid, with its ``createdAt``, each ``(spotId, eraId)`` once. Raises
    :class:`~ledger.errors.InvalidEntryError` naming the entry's index, or
    :class:`~ledger.errors.LedgerIOError`; :meth:`Ledger.import_entries` takes the result. ``progress``
    (:data:`~ledger.backend.Progress`) is told the entries checked, of all, every 1,024 and at the end."""
    ops = ops or FileOps()
    data = source if isinstance(source, bytes) else _read_import(ops, Path(os.fsdecode(source)))
    items = _decode_import(data)
    if not isinstance(items, list):
        raise InvalidEntryError("the file to import must hold a JSON array of entries")
    entries: list[VideoMetadata] = []
    dropped: dict[str, int] = {}
    for index, item in enumerate(items):
        for name in item if isinstance(item, dict) else ():
            if name not in IMPORTED_FIELDS:
                dropped[name] = dropped.get(name, 0) + 1
        try:
            entry = validate_entry(item)
            lifecycle.check_entry(entry)
            if entry.created_at is None:
                raise InvalidEntryError("createdAt is missing")
            for stamp in (entry.created_at, entry.completed_at):
                if stamp is not None:
                    parse_time(stamp)
        except InvalidEntryError as exc:
            raise InvalidEntryError(f"entry {index}: {exc}") from None
        entries.append(entry)
        if progress is not None and (index % 1024 == 1023 or index == len(items) - 1):
            progress(index + 1, len(items))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InvalidEntryError(
            f"entry {keys.index(dup, keys.index(dup) + 1)}: {dup[0]}/{dup[1]} appears twice"
        )
    return ImportFile(entries=tuple(entries), dropped=dropped)


def read_import_stream(
    stream: BinaryIO, *, progress: Callable[[int, int | None], None] | None = None
) -> ImportFile:
    """:func:`read_import` of what ``stream`` holds (``import -``: standard input), within the same size
    limit as a file."""
    data = stream.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidEntryError(f"the file to import holds more than {MAX_IMPORT_BYTES} bytes")
    return read_import(data, progress=progress)


def _read_import(ops: FileOps, path: Path) -> bytes:
    try:
        return ops.read_regular(path, MAX_IMPORT_BYTES, follow_symlinks=True)
    except OSError as exc:
        raise io_error("read", path, exc) from None


_UTF8_BOM: Final = b"\xef\xbb\xbf"
_OTHER_BOMS: Final = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)


def _decode_import(data: bytes) -> object:
    """The JSON value of an import file. A UTF-8 byte-order mark (which some editors add) is skipped;
    every other failure is an :class:`InvalidEntryError` that says what is wrong in words."""
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    else:
        for mark, encoding in _OTHER_BOMS:
            if data.startswith(mark):
                raise InvalidEntryError(
                    f"the file to import is {encoding} (it starts with a {encoding} byte-order mark); "
                    "save it as UTF-8"
                )
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidEntryError(f"the file to import is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEntryError(
            "the file to import nests arrays or objects too deeply to be a list of entries"
        ) from None
