"""The store API: :class:`Ledger` and the task card's functions.

A :class:`Ledger` is a directory holding ``events.jsonl`` (the history, append-only) and, by default,
``generated-videos.json`` (the current view, kept current by the projector). Every write is checked against
the lifecycle under the writer lock, appended as one fsynced line, and then projected into the snapshot
before the call returns. Reads see every write that returned before them, from any process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import msgspec

from ledger import lifecycle
from ledger.errors import (
    CorruptLogError,
    DurabilityError,
    EntryNotFoundError,
    InvalidEntryError,
    LedgerClosedError,
    LedgerIOError,
    ReadOnlyLedgerError,
    SnapshotUpdateError,
    io_error,
)
from ledger.events import (
    FORMAT_VERSION,
    GENESIS_HASH,
    Clock,
    EventType,
    VideoMetadata,
    encode_line,
    format_ts,
    line_hash,
    utc_now,
    validate_entry,
)
from ledger.fileops import FileLock, FileOps
from ledger.log import START, EventLog, Position, TornTail

# The projector, imported as modules: projections import the event types and the log, and the store is
# the one place that calls them back (module imports keep that cycle-free at import time).
from projections import entries as entries_view
from projections import snapshot as snapshot_view

__all__ = (
    "CHECKPOINT_NAME",
    "DIR_ENV",
    "LOG_NAME",
    "SNAPSHOT_NAME",
    "Ledger",
    "RebuildReport",
    "VerifyReport",
    "default_directory",
    "default_ledger",
    "get_all_video_metadata",
    "get_video_metadata",
    "history",
    "mark_video_failed",
    "rebuild",
    "set_video_metadata",
    "verify",
)

log = logging.getLogger("ledger")

DIR_ENV: Final = "VIDEO_LEDGER_DIR"
LOG_NAME: Final = "events.jsonl"
SNAPSHOT_NAME: Final = "generated-videos.json"
CHECKPOINT_NAME: Final = "checkpoint.json"
SNAPSHOT_LOCK_NAME: Final = "snapshot.lock"


def default_directory() -> Path:
    """``$VIDEO_LEDGER_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(DIR_ENV) or "data")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`Ledger.verify` found. ``ok`` is true when ``problem`` is ``None``."""

    events: int
    """Whole events read (up to the first problem)."""
    entries: int
    problem: str | None = None
    line: int | None = None
    """1-based line of ``events.jsonl`` where the first problem is, if it is in the log."""
    torn: TornTail | None = None
    """Bytes at the end that are not a whole event (not a failure: the next write sets them aside)."""
    checkpoint_seq: int | None = None
    """The event the snapshot's checkpoint reaches, if there is a checkpoint."""

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What :meth:`Ledger.rebuild` replayed and wrote."""

    events: int
    entries: int
    torn: TornTail | None = None


class Ledger:
    """A generation ledger in ``directory``.

    Parameters
    ----------
    directory:
        Holds ``events.jsonl``, its lock file and ``checkpoint.json``. Default: :func:`default_directory`.
        Created (with parents) unless ``readonly``.
    snapshot:
        Path of the snapshot the app reads. Default: ``directory / "generated-videos.json"``.
    clock:
        Returns the current time as an aware ``datetime``; injectable for tests. Event times never go
        backwards: an earlier reading than the last event's time is recorded as that time.
    readonly:
        Open for reading only: nothing on disk is created or changed, writes raise
        :class:`~ledger.errors.ReadOnlyLedgerError`.
    follow_symlinks:
        Allow the log and the snapshot to be symbolic links (refused by default).
    ops:
        The file operations seam (:class:`~ledger.fileops.FileOps`); tests pass one that injects faults.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        snapshot: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        readonly: bool = False,
        follow_symlinks: bool = False,
        ops: FileOps | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()
        self.log_path = self.directory / LOG_NAME
        snapshot_path = Path(snapshot) if snapshot is not None else self.directory / SNAPSHOT_NAME
        if follow_symlinks:
            snapshot_path = Path(os.path.realpath(snapshot_path))
        self.snapshot_path = snapshot_path
        self.checkpoint_path = self.directory / CHECKPOINT_NAME
        self.readonly = readonly
        self.follow_symlinks = follow_symlinks
        self._clock: Clock = clock or utc_now
        self._ops = ops or FileOps()
        self._log = EventLog(self.log_path, self._ops, follow_symlinks=follow_symlinks)
        self._snapshot_lock = FileLock(self._ops, self.directory / SNAPSHOT_LOCK_NAME)
        self._mutex = threading.RLock()
        self._entries: entries_view.Entries = {}
        self._pos = START
        self._identity: tuple[int, int] | None = None
        self._loaded = False
        self._snapshot_problem: str | None = None
        self._unusable: str | None = None
        self.last_seq: int | None = None
        """``seq`` of the last event this handle appended (``None`` before its first)."""
        if not readonly:
            self._prepare()

    # -- the card's functions ------------------------------------------------------------------------

    def get_all_video_metadata(self) -> list[VideoMetadata]:
        """Every entry, ordered by ``(spotId, eraId)``."""
        with self._mutex:
            self._refresh()
            return [self._entries[key] for key in sorted(self._entries)]

    def get_video_metadata(self, spot_id: str, era_id: str) -> VideoMetadata | None:
        """The entry for ``(spot_id, era_id)``, or ``None``."""
        key = _key(spot_id, era_id)
        with self._mutex:
            self._refresh()
            return self._entries.get(key)

    def set_video_metadata(self, entry: VideoMetadata | Mapping[str, Any]) -> VideoMetadata:
        """Add or update the entry matched on ``(spotId, eraId)``; returns it as stored.

        ``entry`` is a :class:`VideoMetadata` or a dict in its camelCase form. Its ``status``, ``prompt``,
        ``localPath`` and ``error`` are what the entry should become; ``createdAt`` and ``completedAt`` are
        the ledger's and are ignored. Asking for the state the entry already has records nothing.

        Raises :class:`~ledger.errors.InvalidEntryError` or :class:`~ledger.errors.IllegalTransitionError`
        (nothing written), :class:`~ledger.errors.LedgerIOError` (not acknowledged).
        """
        desired = validate_entry(entry)
        return self._write(desired.key, lambda current: lifecycle.plan_change(current, desired))

    def mark_video_failed(self, spot_id: str, era_id: str, error: str) -> VideoMetadata:
        """Record that the running attempt for ``(spot_id, era_id)`` failed with ``error``."""
        key = _key(spot_id, era_id)

        def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is None:
                raise EntryNotFoundError(f"no entry for spotId={spot_id!r} eraId={era_id!r}")
            desired = validate_entry(msgspec.structs.replace(current, status="failed", error=error))
            return lifecycle.plan_change(current, desired)

        return self._write(key, plan)

    # -- history, rebuild, verify --------------------------------------------------------------------

    def history(self, spot_id: str | None = None, era_id: str | None = None) -> Iterator[EventType]:
        """Every event in log order, optionally only those of one spot, one era, or one entry."""
        for _, event in self.history_lines(spot_id, era_id):
            yield event

    def history_lines(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        """Like :meth:`history`, with each event's line exactly as stored (newline excluded)."""
        for line, event in self._log.scan(START).records():
            if (spot_id is None or event.spot_id == spot_id) and (era_id is None or event.era_id == era_id):
                yield line, event

    def rebuild(self) -> RebuildReport:
        """Replay the whole log into a fresh snapshot (same bytes as the one kept current)."""
        self._check_writable()
        with self._mutex, self._snapshot_lock.held():
            scan = self._log.scan(START)
            entries = entries_view.fold(scan)
            self._entries, self._pos, self._loaded = entries, scan.end, True
            self._identity = self._log.identity()
            self._write_snapshot()
            return RebuildReport(events=scan.end.seq, entries=len(entries), torn=scan.torn)

    def verify(self) -> VerifyReport:
        """Walk the whole log checking every line's crc, ``seq``, chain hash, time order and lifecycle
        change, then the checkpoint and snapshot against it. Reports the first problem; changes nothing."""
        scan = self._log.scan(START, chain=True)
        checkpoint = snapshot_view.read_checkpoint(self.checkpoint_path)
        if checkpoint is not None and checkpoint.snapshot != str(self.snapshot_path.absolute()):
            checkpoint = None
        entries: entries_view.Entries = {}
        snapshot_at_checkpoint = snapshot_view.encode_snapshot(entries) if checkpoint else None
        problem: str | None = None
        line: int | None = None
        last_ts = ""
        try:
            for event in scan:
                current = entries.get(event.key)
                before = None if current is None else current.status
                if not lifecycle.is_legal(before, event.STATUS):
                    problem, line = f"illegal change {before or 'new'} -> {event.STATUS}", event.seq
                    break
                if event.ts < last_ts:
                    problem, line = f"time goes backwards ({event.ts} after {last_ts})", event.seq
                    break
                last_ts = event.ts
                entries[event.key] = entries_view.apply(current, event)
                if checkpoint is not None and event.seq == checkpoint.seq:
                    snapshot_at_checkpoint = snapshot_view.encode_snapshot(entries)
        except CorruptLogError as exc:
            problem, line = exc.reason, exc.line
        end = scan.end
        if problem is None and checkpoint is not None:
            problem = self._check_checkpoint(checkpoint, end, snapshot_at_checkpoint)
        return VerifyReport(
            events=end.seq,
            entries=len(entries),
            problem=problem,
            line=line,
            torn=scan.torn if problem is None else None,
            checkpoint_seq=None if checkpoint is None else checkpoint.seq,
        )

    def _check_checkpoint(
        self, checkpoint: snapshot_view.Checkpoint, end: Position, expected: bytes | None
    ) -> str | None:
        if checkpoint.seq > end.seq or checkpoint.offset > end.offset:
            return (
                f"the log ends at event {end.seq} but the snapshot's checkpoint is at event "
                f"{checkpoint.seq}: "
                "trailing events are missing from the log"
            )
        if self._line_hash_at(checkpoint.offset) != checkpoint.last_hash:
            return f"the snapshot's checkpoint (event {checkpoint.seq}) does not match the log"
        try:
            actual = self.snapshot_path.read_bytes()
        except OSError as exc:
            return f"the snapshot {self.snapshot_path} cannot be read ({exc.strerror})"
        if actual != expected:
            return (
                f"the snapshot {self.snapshot_path} is not the replay of the log up to event {checkpoint.seq}"
            )
        return None

    # -- lifecycle of the handle ---------------------------------------------------------------------

    @property
    def position(self) -> Position:
        """How far into the log this handle has read (``position.seq`` is the last event it knows)."""
        with self._mutex:
            self._refresh()
            return self._pos

    def close(self) -> None:
        """Release the files this handle holds open. Further writes raise :class:`LedgerClosedError`."""
        with self._mutex:
            self._log.close()
            self._snapshot_lock.close()
            self._unusable = self._unusable or "it was closed"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.directory)!r}, snapshot={str(self.snapshot_path)!r})"

    # -- internals -----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Create the directory and an empty log if missing, set a torn tail aside, load the state, and
        bring the snapshot up to date."""
        self._refuse_symlinked_snapshot()
        created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if created:
                self._ops.fsync_dir(self.directory.parent)
        except OSError as exc:
            raise io_error("create the ledger directory", self.directory, exc) from None
        if not self.directory.is_dir():
            raise LedgerIOError(f"cannot use {self.directory}: it is not a directory")
        with self._mutex:
            with self._log.locked():
                self._log.create()
                self._refresh(repair=True)
            self._project()

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyLedgerError(f"{self.directory} was opened read-only")
        if self._unusable is not None:
            raise LedgerClosedError(f"this ledger handle accepts no more writes: {self._unusable}")

    def _line_hash_at(self, offset: int) -> str:
        line = self._log.line_before(offset) if offset else b""
        return line_hash(line) if line else GENESIS_HASH

    def _load(self) -> None:
        """Rebuild this handle's state from disk: from the checkpointed snapshot if it can be trusted,
        else from the start of the log."""
        self._entries, self._pos, self._loaded = {}, START, False
        self._identity = self._log.identity()
        checkpoint = snapshot_view.read_checkpoint(self.checkpoint_path)
        if checkpoint is None:
            self._snapshot_problem = (
                "it has no checkpoint" if self.snapshot_path.exists() else "it is missing"
            )
        else:
            size = self._log.size()
            if checkpoint.offset > size:
                raise CorruptLogError(
                    self.log_path,
                    checkpoint.seq,
                    f"the log ends at byte {size} but the snapshot's checkpoint is at event {checkpoint.seq} "
                    f"(byte {checkpoint.offset}): trailing events are missing from the log",
                )
            if self._line_hash_at(checkpoint.offset) != checkpoint.last_hash:
                raise CorruptLogError(
                    self.log_path, checkpoint.seq, "the log does not match the snapshot's checkpoint"
                )
            loaded = snapshot_view.load_snapshot(self.snapshot_path, checkpoint)
            if loaded.entries is not None:
                self._entries, self._pos = loaded.entries, checkpoint.position
                self._snapshot_problem = None
            else:
                self._snapshot_problem = loaded.problem
        self._loaded = True

    def _refresh(self, *, repair: bool = False) -> None:
        """Read what other processes appended since this handle last looked. With ``repair`` (writer lock
        held), a torn tail is set aside."""
        if not self._loaded or self._log.identity() != self._identity:
            self._load()
        if self._log.size() == self._pos.offset:
            return
        scan = self._log.scan(self._pos)
        try:
            entries_view.fold(scan, self._entries)
        except BaseException:
            self._loaded = False  # the state may be half-updated: reload next time
            raise
        self._pos = scan.end
        if repair and scan.torn is not None:
            self._log.repair(scan.torn)

    def _now(self, last_ts: str) -> str:
        ts = format_ts(self._clock())
        return ts if ts >= last_ts else last_ts

    def _write(
        self, key: tuple[str, str], plan: Callable[[VideoMetadata | None], lifecycle.Change | None]
    ) -> VideoMetadata:
        self._check_writable()
        with self._mutex:
            with self._log.locked():
                self._refresh(repair=True)
                current = self._entries.get(key)
                change = plan(current)
                if change is None:
                    assert current is not None
                    after = current
                else:
                    after = self._append(key, current, change)
                recorded = self._pos.seq
            try:
                self._project()
            except LedgerIOError as exc:
                if change is None:
                    raise
                raise SnapshotUpdateError(
                    f"event {recorded} was recorded, but {exc}; retrying the call (it records nothing "
                    "more) or `video-ledger rebuild` brings the snapshot up to date",
                    seq=recorded,
                ) from None
            return after

    def _append(
        self, key: tuple[str, str], current: VideoMetadata | None, change: lifecycle.Change
    ) -> VideoMetadata:
        pos = self._pos
        event = change.cls(
            v=FORMAT_VERSION,
            seq=pos.seq + 1,
            ts=self._now(pos.last_ts),
            spot_id=key[0],
            era_id=key[1],
            prev=pos.last_hash,
            **change.fields,
        )
        line = encode_line(event)
        try:
            self._log.append(line, pos.offset)
        except DurabilityError as exc:
            self._unusable = str(exc)
            raise
        self._pos = Position(pos.offset + len(line), event.seq, line_hash(line[:-1]), event.ts)
        self.last_seq = event.seq
        after = entries_view.apply(current, event)
        self._entries[key] = after
        return after

    def _project(self) -> None:
        """Bring the snapshot up to this handle's position unless it already is (never backwards)."""
        with self._snapshot_lock.held():
            self._refresh()
            checkpoint = snapshot_view.read_checkpoint(self.checkpoint_path)
            if self._snapshot_problem is None and snapshot_view.snapshot_is_current(
                self.snapshot_path, checkpoint, self._pos.seq
            ):
                return
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        self._refuse_symlinked_snapshot()
        data = snapshot_view.encode_snapshot(self._entries)
        if self._snapshot_problem is not None:
            try:
                differs = self.snapshot_path.read_bytes() != data
            except OSError:
                differs = False  # missing: nothing to report
            if differs:
                log.warning("%s: %s; rebuilding it from the log", self.snapshot_path, self._snapshot_problem)
        try:
            snapshot_view.remove_temp_files(self._ops, self.snapshot_path, self.checkpoint_path)
            snapshot_view.write_snapshot(self._ops, self.snapshot_path, self.checkpoint_path, data, self._pos)
        except OSError as exc:
            raise io_error("write the snapshot", self.snapshot_path, exc) from None
        self._snapshot_problem = None

    def _refuse_symlinked_snapshot(self) -> None:
        if not self.follow_symlinks and self.snapshot_path.is_symlink():
            raise LedgerIOError(
                f"cannot write {self.snapshot_path}: it is a symbolic link "
                "(refused; pass follow_symlinks=True to allow it)"
            )


def _key(spot_id: object, era_id: object) -> tuple[str, str]:
    if not isinstance(spot_id, str) or not isinstance(era_id, str) or not spot_id or not era_id:
        raise InvalidEntryError(f"spotId and eraId must be non-empty strings, not {spot_id!r} and {era_id!r}")
    return (spot_id, era_id)


# -- module-level twins acting on the default ledger ($VIDEO_LEDGER_DIR, else ./data) --------------------

_defaults: dict[Path, Ledger] = {}
_defaults_mutex = threading.Lock()


def default_ledger() -> Ledger:
    """The ledger in :func:`default_directory`, opened once per directory and process."""
    directory = default_directory().absolute()
    with _defaults_mutex:
        ledger = _defaults.get(directory)
        if ledger is None or ledger._unusable is not None:
            ledger = _defaults[directory] = Ledger(directory)
        return ledger


def get_all_video_metadata() -> list[VideoMetadata]:
    """:meth:`Ledger.get_all_video_metadata` on the default ledger."""
    return default_ledger().get_all_video_metadata()


def get_video_metadata(spot_id: str, era_id: str) -> VideoMetadata | None:
    """:meth:`Ledger.get_video_metadata` on the default ledger."""
    return default_ledger().get_video_metadata(spot_id, era_id)


def set_video_metadata(entry: VideoMetadata | Mapping[str, Any]) -> VideoMetadata:
    """:meth:`Ledger.set_video_metadata` on the default ledger."""
    return default_ledger().set_video_metadata(entry)


def mark_video_failed(spot_id: str, era_id: str, error: str) -> VideoMetadata:
    """:meth:`Ledger.mark_video_failed` on the default ledger."""
    return default_ledger().mark_video_failed(spot_id, era_id, error)


def history(spot_id: str | None = None, era_id: str | None = None) -> Iterator[EventType]:
    """:meth:`Ledger.history` on the default ledger."""
    return default_ledger().history(spot_id, era_id)


def rebuild() -> RebuildReport:
    """:meth:`Ledger.rebuild` on the default ledger."""
    return default_ledger().rebuild()


def verify() -> VerifyReport:
    """:meth:`Ledger.verify` on the default ledger."""
    return default_ledger().verify()
