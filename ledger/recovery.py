"""Bringing ``events.jsonl`` back to whole lines after a crash: create it, find where its whole lines end,
set a torn tail aside.

A crash can only tear bytes beyond the part of the log known to be fsynced (:mod:`ledger.syncstate`), so a
writer that takes over reads on from there (:func:`whole_end`), and what it finds after the last whole
line is a torn tail: never acknowledged, so it is cut off the log, but kept beside it where an auditor can
see it (:func:`set_aside`), never silently dropped. Everything here runs under the queue lock.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Final

from ledger.backend import GENESIS, Head, TornTail
from ledger.errors import io_error
from ledger.fileops import TEMP_MARK, Extent, atomic_write
from ledger.logfile import LogFile
from ledger.scan import Scan
from ledger.syncstate import SyncRecord

__all__ = ("create", "set_aside", "whole_end")

log = logging.getLogger("ledger")

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def create(file: LogFile) -> bool:
    """Create an empty log (file and directory entry fsynced) if there is none. Returns whether it did."""
    ops = file.ops
    try:
        fd = ops.open(file.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    except FileExistsError:
        return False
    except OSError as exc:
        raise io_error("create", file.path, exc) from None
    try:
        try:
            ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.point("log.created")
        ops.fsync_dir(file.path.parent)
    except OSError as exc:
        raise io_error("create", file.path, exc) from None
    return True


def whole_end(file: LogFile, record: SyncRecord, fsynced: int) -> Head:
    """Where the whole lines of the log end, read on from ``fsynced`` (a size known to be fsynced; from the
    start when no whole line ends there). Lines after it were written by a leader that died before its
    fsync; a torn tail after them is set aside."""
    fd = file.reader()
    scan = Scan(file, record, file.head_at(fsynced, fd) or GENESIS, chain=False, fd=fd)
    end = scan.skip()
    if scan.torn is not None:
        set_aside(file, scan.torn)
    return end


def set_aside(file: LogFile, torn: TornTail) -> Path:
    """Copy a torn tail to ``events.jsonl.torn-<offset>-<digest>`` (fsynced) and cut the log back to where
    it starts; returns the copy's path.

    The name depends only on where the tail was and what it held, so a repair interrupted by a crash and
    run again keeps one copy. The tail is read in chunks, twice (its digest, then the copy), and a run of
    zeros stays a hole in the copy: memory and disk stay small whatever the tail.
    """
    ops, path = file.ops, file.path
    try:
        for name in ops.listdir(path.parent):  # left by a crash while setting a tail aside
            if name.startswith(f"{path.name}.torn-") and TEMP_MARK in name:
                ops.unlink(path.parent / name)
        fd = ops.open_regular(path, os.O_RDONLY | file.nofollow)
        try:
            tail = Extent(fd, torn.offset, ops.fstat(fd).st_size - torn.offset)
            digest = hashlib.sha256()
            for chunk in tail.chunks(ops):
                digest.update(chunk)
            aside = path.with_name(f"{path.name}.torn-{torn.offset}-{digest.hexdigest()[:16]}")
            if not _exists(file, aside):
                atomic_write(ops, aside, tail, label="torn")
        finally:
            ops.close(fd)
        fd = file.appender()
        ops.ftruncate(fd, torn.offset)
        ops.fsync(fd)
    except OSError as exc:
        raise io_error("set aside the torn tail of", path, exc) from None
    log.warning(
        "%s: set aside %d torn bytes from line %d (offset %d) in %s",
        path,
        tail.size,
        torn.line,
        torn.offset,
        aside.name,
    )
    return aside


def _exists(file: LogFile, path: Path) -> bool:
    try:
        file.ops.stat(path)
    except FileNotFoundError:
        return False
    return True
