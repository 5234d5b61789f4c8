"""The store API: :class:`Ledger` and the task card's functions.

A :class:`Ledger` is a directory holding ``events.jsonl`` (the history, append-only) and, by default,
``generated-videos.json`` (the current view, kept current by the projector). Every write is checked against
the lifecycle under the writer lock, appended as one fsynced line, and then projected into the snapshot
before the call returns. Reads see every write that returned before them, from any process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import logging
import operator
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypedDict, Unpack

import msgspec

from ledger import lifecycle, pipeline
from ledger import projector as snapshot_view
from ledger import watch as watch_view
from ledger.backend import EventStore, Head, Record, TornTail
from ledger.errors import (
    AttemptInProgressError,
    ClockSkewError,
    ConflictError,
    CorruptLogError,
    DurabilityError,
    EntryNotFoundError,
    InvalidEntryError,
    LedgerClosedError,
    LedgerError,
    LedgerIOError,
    NoLedgerError,
    ReadOnlyLedgerError,
    SnapshotUpdateError,
    UnimportedSnapshotError,
    io_error,
)
from ledger.events import (
    FORMAT_VERSION,
    GENESIS_HASH,
    Clock,
    EventType,
    Imported,
    Ready,
    Status,
    VideoMetadata,
    encode_line,
    format_ts,
    line_hash,
    normalize_id,
    parse_time,
    utc_now,
    validate_entry,
)
from ledger.fileops import FileLock, FileOps, atomic_write
from ledger.layout import Layout, default_directory
from ledger.log import EventLog
from ledger.model import Model
from ledger.stores import STORE_ENV, check_store_spec, is_url, open_store, same_directory, store_spec
from projections import entries as entries_view
from projections import files as files_view
from projections import stats as stats_view
from projections import timeline as timeline_view

__all__ = (
    "MAX_CLOCK_LEAD",
    "FilesReport",
    "ImportFile",
    "ImportReport",
    "Ledger",
    "RebuildReport",
    "Timeline",
    "VerifyReport",
    "default_directory",
    "default_ledger",
    "encode_entries",
    "generate_and_store_video",
    "generation",
    "get_all_video_metadata",
    "get_video_metadata",
    "history",
    "mark_video_failed",
    "mark_video_ready",
    "parse_head",
    "read_import",
    "reap",
    "rebuild",
    "save_entries",
    "set_video_metadata",
    "verify",
    "watch",
)

Timeline = timeline_view.Timeline
"""What :meth:`Ledger.timeline` returns."""

log = logging.getLogger("ledger")
_ts_of = operator.attrgetter("ts")
_key_of = operator.attrgetter("spot_id", "era_id")

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CHUNK: Final = 1 << 20

_RETRIES: Final = 100
"""How often a commit is tried again when what it read was dropped by another writer's failed commit."""

MAX_CLOCK_LEAD: Final = dt.timedelta(days=30)
"""How far after the log's last event a writer's clock may read before its events are refused
(:class:`~ledger.errors.ClockSkewError`, unless the handle has ``force_clock=True``): one clock that is far
ahead would otherwise move every later event's time with it (``docs/lifecycle.md``, *Time*)."""

_CLAMP_WARNING: Final = dt.timedelta(seconds=1)
"""A writer's clock this far behind the log's time is logged as a warning (any amount is recorded)."""

Plan = Callable[[VideoMetadata | None], lifecycle.Change | None]
"""Given an entry's current state (``None`` if new), the change to record, or ``None`` for nothing."""


class HistoryFilters(TypedDict, total=False):
    """The filters of :meth:`Ledger.history` besides the entry."""

    since_seq: int | None
    since: str | dt.datetime | None
    until: str | dt.datetime | None
    status: str | None
    type: str | None


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
    head: str | None = None
    """``SEQ:HASH``, once the whole log verified: the last event's ``seq`` and the SHA-256 (64 hex digits) of
    its line, which the next line's ``prev`` will name. Kept elsewhere, it anchors the chain
    (``verify(expect_head=...)``, docs/guarantees.md). Only an event known fsynced is a head: lines a writer
    killed before its fsync left are verified but not named."""
    snapshot_seq: int | None = None
    """The event after which the replay of the log is the snapshot (``None``: no snapshot, or a problem)."""
    note: str | None = None
    """A harmless state worth saying (the checkpoint behind the snapshot after a crash)."""
    skew: stats_view.ClockSkew | None = None
    """Events recorded at a later time than their writer's clock read (not a failure: see
    ``docs/lifecycle.md``, *Time*), up to the first problem."""
    non_nfc: str | None = None
    """Entries whose id the log holds in another form than NFC (written before ids were normalised), how
    many and the first event naming one (not a failure: see ``docs/format.md``)."""

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :meth:`Ledger.import_entries` did."""

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


@dataclass(frozen=True, slots=True)
class FilesReport:
    """What :meth:`Ledger.verify_files` found: one line per problem."""

    checked: int
    problems: list[str]
    unreferenced: list[Path]

    @property
    def ok(self) -> bool:
        return not self.problems


VIDEO_SUFFIXES: Final = frozenset({".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi"})


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What :meth:`Ledger.rebuild` replayed and wrote."""

    events: int
    entries: int
    torn: TornTail | None = None
    """Always ``None`` now: a writable open sets a torn tail aside before any rebuild, and the replay reads
    only durable records (kept for the API's sake)."""


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
        backwards: an earlier reading than the last event's time is recorded as that time, with the
        reading kept in the event's ``clock``. A reading more than :data:`MAX_CLOCK_LEAD` after the last
        event's time is refused with :class:`~ledger.errors.ClockSkewError`.
    force_clock:
        Record events at this handle's clock even when it reads more than :data:`MAX_CLOCK_LEAD` after
        the last event (the ledger was idle that long, and this clock is known to be right).
    readonly:
        Open for reading only: nothing on disk is created or changed, writes raise
        :class:`~ledger.errors.ReadOnlyLedgerError`. A directory without ``events.jsonl`` raises
        :class:`~ledger.errors.NoLedgerError` ("no ledger at DIR").
    projection:
        ``"inline"`` (default): every write brings the snapshot up to date before it returns.
        ``"deferred"``: writes only append (the fastest way to record); a ``video-ledger watch`` process,
        :meth:`rebuild`, or any inline writer brings the snapshot up to date.
    follow_symlinks:
        Allow the log and the snapshot to be symbolic links (refused by default).
    ops:
        The file operations seam (:class:`~ledger.fileops.FileOps`); tests pass one that injects faults.
    store:
        The event store that holds the log: an :class:`~ledger.backend.EventStore`
        (:class:`~ledger.memory.MemoryStore`, :class:`~ledger.postgres.PostgresStore`), or a spec that
        :func:`ledger.stores.open_store` opens: a ``postgresql://`` URL (``pip install
        'video-ledger[postgres]'``; the schema made by ``video-ledger --store URL init``) or a directory
        (its ``events.jsonl``). ``None`` (default): ``$VIDEO_LEDGER_STORE`` when set and not empty (a URL
        is opened; a directory is the ledger directory, and a different ``directory`` is refused with
        :class:`~ledger.errors.InvalidEntryError`), else the file store ``events.jsonl`` in ``directory``.
        With any other store, ``directory`` holds only that host's snapshot, its checkpoint and the
        projection lock; the ledger closes the store when it is closed.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        snapshot: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        force_clock: bool = False,
        readonly: bool = False,
        projection: Literal["inline", "deferred"] = "inline",
        follow_symlinks: bool = False,
        ops: FileOps | None = None,
        store: EventStore | str | os.PathLike[str] | None = None,
    ) -> None:
        if projection not in ("inline", "deferred"):
            raise InvalidEntryError(f"projection must be 'inline' or 'deferred', not {projection!r}")
        directory, store, opened = _resolve_store(
            directory, store, readonly=readonly, ops=ops, follow_symlinks=follow_symlinks
        )
        try:
            self._init(
                directory, snapshot, clock, force_clock, readonly, projection, follow_symlinks, ops, store
            )
        except BaseException:
            if opened and store is not None:
                store.close()
            raise

    def _init(
        self,
        directory: str | os.PathLike[str] | None,
        snapshot: str | os.PathLike[str] | None,
        clock: Clock | None,
        force_clock: bool,
        readonly: bool,
        projection: Literal["inline", "deferred"],
        follow_symlinks: bool,
        ops: FileOps | None,
        store: EventStore | None,
    ) -> None:
        self.layout = Layout.of(directory, snapshot, follow_symlinks=follow_symlinks)
        if (problem := self.layout.snapshot_problem()) is not None:
            raise InvalidEntryError(problem)
        self.directory = self.layout.directory
        self.log_path = self.layout.log
        self.snapshot_path = self.layout.snapshot
        self.checkpoint_path = self.layout.checkpoint
        self.projection = projection
        self.readonly = readonly
        self.follow_symlinks = follow_symlinks
        self._clock: Clock = clock or utc_now
        self.force_clock = force_clock
        self._ops = ops or FileOps()
        given = store is not None
        self._file_store = not given
        if store is None:
            store = EventLog(self.log_path, self._ops, follow_symlinks=follow_symlinks)
        self._store: EventStore = store
        self._where = _where(store)
        if given and _where(store) != self.log_path and self.log_path.exists():
            log.warning(
                "%s holds a file store's %s, but this ledger's events are in %s: that file is neither read "
                "nor written here (move it away once a copy of it is verified)",
                self.directory, self.log_path.name, self._where,
            )  # fmt: skip
        self._snapshot_lock = FileLock(self._ops, self.layout.snapshot_lock)
        self._model = Model(store)
        self._view = snapshot_view.Projector(
            store,
            self._model,
            self.snapshot_path,
            self.checkpoint_path,
            self._snapshot_lock,
            ops=self._ops,
            where=self._where,
            follow_symlinks=follow_symlinks,
        )
        self._mutex = threading.RLock()
        self._unusable: str | None = None
        self.last_seq: int | None = None
        """``seq`` of the last event this handle appended (``None`` before its first)."""
        if not readonly:
            try:
                self._prepare()
            except LedgerError:
                raise
            except OSError as exc:  # permission denied on a path the steps above touch, and the like
                raise io_error("use", Path(exc.filename) if exc.filename else self.directory, exc) from None
        elif not given and not (self.log_path.exists() or self.log_path.is_symlink()):
            raise NoLedgerError(f"no ledger at {self.directory} (it holds no {self.log_path.name})")

    # -- the card's functions ------------------------------------------------------------------------

    def get_all_video_metadata(self) -> list[VideoMetadata]:
        """Every entry, ordered by ``(spotId, eraId)``."""
        with self._mutex:
            self._view.refresh()
            entries = self._model.entries
            return [entries[key] for key in sorted(entries)]

    def get_video_metadata(self, spot_id: str, era_id: str) -> VideoMetadata | None:
        """The entry for ``(spot_id, era_id)``, or ``None``."""
        key = _key(spot_id, era_id)
        with self._mutex:
            self._view.refresh()
            entries = self._model.entries
            return entries.get(_stored_key(key, (spot_id, era_id), entries))

    def set_video_metadata(self, entry: VideoMetadata | Mapping[str, Any]) -> VideoMetadata:
        """Add or update the entry matched on ``(spotId, eraId)``; returns it as stored.

        ``entry`` is a :class:`VideoMetadata` or a dict in its camelCase form. Its ``status``, ``prompt``,
        ``localPath`` and ``error`` are what the entry should become; ``createdAt`` and ``completedAt`` are
        the ledger's and are ignored. Asking for the state the entry already has records nothing.

        Raises :class:`~ledger.errors.InvalidEntryError` or :class:`~ledger.errors.IllegalTransitionError`
        (nothing written), :class:`~ledger.errors.LedgerIOError` (not acknowledged).
        """
        desired = validate_entry(entry)
        return self._write(_given_key(entry, desired), _plan_to(desired))

    def update_entry(
        self,
        spot_id: str,
        era_id: str,
        status: str,
        *,
        prompt: str | None = None,
        local_path: str | None = None,
        error: str | None = None,
    ) -> VideoMetadata:
        """:meth:`set_video_metadata` from its parts (what ``video-ledger set`` records): ``prompt``
        defaults to the entry's current one, read under the writer lock; a new entry needs one
        (:class:`~ledger.errors.InvalidEntryError`, nothing written)."""
        fields: dict[str, object] = {
            "spotId": spot_id, "eraId": era_id, "status": status, "localPath": local_path, "error": error,
        }  # fmt: skip
        if prompt is not None:
            return self.set_video_metadata({**fields, "prompt": prompt})
        checked = validate_entry({**fields, "prompt": ""})  # every other field refused before the lock

        def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is None:
                raise InvalidEntryError(f"{spot_id}/{era_id} is a new entry: a prompt is required")
            return lifecycle.plan_change(current, msgspec.structs.replace(checked, prompt=current.prompt))

        return self._write((spot_id, era_id), plan)

    def set_many(self, entries: Iterable[VideoMetadata | Mapping[str, Any]]) -> list[VideoMetadata]:
        """:meth:`set_video_metadata` for many entries at once: one lock, one write, one fsync, one
        projection for all of them (bulk queueing, imports). Each change is checked against the state the
        ones before it leave; if any is refused, nothing is written. Returns the entries as stored."""
        given = list(entries)
        desired = [validate_entry(e) for e in given]
        requests = [(_given_key(e, d), _plan_to(d)) for e, d in zip(given, desired, strict=True)]
        return [r for r in self._commit(requests) if r is not None]

    def mark_video_failed(
        self, spot_id: str, era_id: str, error: str, *, attempt: int | None = None
    ) -> VideoMetadata:
        """Record that the running attempt for ``(spot_id, era_id)`` failed with ``error``.

        ``attempt`` names the attempt that failed (``job.attempt``); if it is not the entry's current one,
        :class:`~ledger.errors.IllegalTransitionError` and nothing is written. ``None``: the current one.
        """
        key = _given_ids(spot_id, era_id)

        def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is None:
                raise EntryNotFoundError(f"no entry for spotId={spot_id!r} eraId={era_id!r}")
            named = current.attempt if attempt is None else attempt
            desired = validate_entry(
                msgspec.structs.replace(current, status="failed", error=error, attempt=named)
            )
            return lifecycle.plan_change(current, desired)

        return self._write(key, plan)

    def mark_video_ready(
        self,
        spot_id: str,
        era_id: str,
        local_path: str,
        *,
        size: int | None = None,
        sha256: str | None = None,
        attempt: int | None = None,
    ) -> VideoMetadata:
        """Record that the running attempt for ``(spot_id, era_id)`` produced ``local_path``, optionally with
        the file's ``size`` and ``sha256`` (kept in the log for ``verify --files``).

        ``attempt`` names the attempt that produced it (``job.attempt``); if it is not the entry's current
        one, :class:`~ledger.errors.IllegalTransitionError` and nothing is written. ``None``: the current
        one."""
        key = _given_ids(spot_id, era_id)

        def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is None:
                raise EntryNotFoundError(f"no entry for spotId={spot_id!r} eraId={era_id!r}")
            named = current.attempt if attempt is None else attempt
            desired = validate_entry(
                msgspec.structs.replace(
                    current, status="ready", local_path=local_path, error=None, attempt=named
                )
            )
            change = lifecycle.plan_change(current, desired)
            if change is not None:
                change.fields.update(size=size, sha256=sha256)
            return change

        return self._write(key, plan)

    # -- the pipeline's side ---------------------------------------------------------------------------

    def generation(
        self,
        spot_id: str,
        era_id: str,
        prompt: str,
        *,
        local_path: str | None = None,
        takeover: int | None = None,
    ) -> contextlib.AbstractContextManager[pipeline.Job]:
        """Record one generation attempt: ``generating`` now, then ``ready`` or ``failed``.

        ::

            with ledger.generation("colosseum", "rome-80ad", prompt) as job:
                path = render(prompt)      # writes the file
                job.ready(path)            # records ready with the file's size and SHA-256

        An exception in the block records ``failed`` with its type and message and is re-raised; leaving
        the block without ``job.ready()`` records ``failed`` saying so; Ctrl-C and (in the main thread)
        SIGTERM record ``failed`` ("interrupted") before the process ends (SIGTERM exits with status 143).

        The attempt is ``job.attempt``, and only it can end itself: if another attempt on the entry is
        live, this raises :class:`~ledger.errors.AttemptInProgressError` (see :meth:`begin_attempt`,
        which also explains ``takeover``).
        """
        return pipeline.generation(self, spot_id, era_id, prompt, local_path=local_path, takeover=takeover)

    def begin_attempt(
        self,
        spot_id: str,
        era_id: str,
        prompt: str,
        *,
        local_path: str | None = None,
        takeover: int | None = None,
    ) -> VideoMetadata:
        """Start a new generation attempt (what :meth:`generation` records first) and return the entry:
        ``entry.attempt`` is the attempt's number, the ``seq`` of its ``generating`` event, which
        ``mark_video_ready`` / ``mark_video_failed`` name to end it.

        Unlike ``set_video_metadata(status="generating")``, which records nothing for an entry that is
        already generating, this never joins a live attempt: it raises
        :class:`~ledger.errors.AttemptInProgressError` (nothing written). ``takeover=N`` takes over live
        attempt ``N`` that its worker abandoned: ``failed`` ("taken over") for attempt ``N`` and
        ``generating`` for the new one, in one commit; the old worker's ``ready`` or ``failed`` is then
        refused. If another attempt than ``N`` is live, :class:`~ledger.errors.AttemptInProgressError`.
        """
        key = _given_ids(spot_id, era_id)
        desired = validate_entry(
            VideoMetadata(
                spot_id=spot_id, era_id=era_id, prompt=prompt, status="generating", local_path=local_path
            )
        )

        def live(current: VideoMetadata) -> AttemptInProgressError:
            number = (
                "an attempt started in format 1" if current.attempt is None else f"attempt {current.attempt}"
            )
            how = (
                f"if its worker is gone, pass takeover={current.attempt}"
                if current.attempt is not None
                else "if its worker is gone, end it first (reap or mark_video_failed)"
            )
            return AttemptInProgressError(
                f"{spot_id}/{era_id}: {number} is live (generating since {current.updated_at}): another "
                f"worker is generating this entry; {how}",
                attempt=current.attempt,
                since=current.updated_at,
            )

        def end_abandoned(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is None or current.status != "generating":
                return None  # nothing live to take over
            if current.attempt != takeover:
                raise live(current)
            error = f"abandoned: taken over by a new attempt (generating since {current.updated_at})"
            return lifecycle.plan_change(
                current, msgspec.structs.replace(current, status="failed", error=error)
            )

        def start(current: VideoMetadata | None) -> lifecycle.Change | None:
            if current is not None and current.status == "generating":
                raise live(current)
            return lifecycle.plan_change(current, desired)

        requests: list[tuple[tuple[str, str], Plan]] = [(key, start)]
        if takeover is not None:
            requests.insert(0, (key, end_abandoned))
        after = self._commit(requests)[-1]
        assert after is not None
        return after

    def generate_and_store_video(
        self,
        spot_id: str,
        era_id: str,
        prompt: str,
        generate: Callable[[], str | os.PathLike[str]],
        *,
        local_path: str | Callable[[Path], str] | None = None,
    ) -> VideoMetadata:
        """The task card's ``generateAndStoreVideo`` in one call: ``generate()`` writes the video and
        returns its path; the attempt is recorded as :meth:`generation` describes. ``local_path`` is the
        ``localPath`` the app gets (relative, under the ledger directory; default: the file's path relative
        to the ledger directory, which it must then be in), as :meth:`pipeline.Job.ready` takes it."""
        return pipeline.generate_and_store_video(
            self, spot_id, era_id, prompt, generate, local_path=local_path
        )

    def reap(self, older_than: dt.timedelta, *, now: dt.datetime | None = None) -> list[VideoMetadata]:
        """Mark ``failed`` every entry that has been ``generating`` for longer than ``older_than`` without
        any event (its worker died). Returns the entries it failed.

        Safe beside live workers: each entry is re-checked under the writer lock, so a worker that records
        ``ready`` first wins (the entry is left alone), and a worker that comes second gets
        :class:`~ledger.errors.IllegalTransitionError`.
        """
        if older_than <= dt.timedelta(0):
            raise InvalidEntryError(f"older_than must be positive, not {older_than}")
        cutoff = format_ts((now or self._clock()) - older_than)
        generating = [e for e in self.get_all_video_metadata() if e.status == "generating"]
        # (updatedAt, generating since): the entry's last event, or, for an entry imported as generating,
        # the original createdAt it was imported with (its import is not when it started generating)
        stale = {e.key: (e.updated_at, e.updated_at) for e in generating if (e.updated_at or "") < cutoff}
        stale.update(self._imported_generating_since(generating, cutoff))
        reaped: list[tuple[str, str]] = []

        def plan_for(key: tuple[str, str], stamps: tuple[str | None, str | None]) -> Plan:
            updated, since = stamps

            def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
                if current is None or current.status != "generating" or current.updated_at != updated:
                    return None  # the worker moved on meanwhile
                reaped.append(key)
                error = (
                    f"abandoned: generating since {since} with no event for more than {_human(older_than)}"
                )
                return lifecycle.plan_change(
                    current, msgspec.structs.replace(current, status="failed", error=error)
                )

            return plan

        results = self._commit([(key, plan_for(key, stamps)) for key, stamps in sorted(stale.items())])
        return [r for r in results if r is not None and r.key in reaped]

    def _imported_generating_since(
        self, generating: list[VideoMetadata], cutoff: str
    ) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        """The entries still as they were imported (as ``generating``) whose original createdAt is before
        ``cutoff``. Reads the log only when some generating entry was created before the cutoff but has
        an event after it (which an imported one has: its import)."""
        maybe = {e.key: e for e in generating if (e.created_at or "") < cutoff <= (e.updated_at or "")}
        found: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        if not maybe:
            return found
        for event in self.history(type="imported"):
            entry = maybe.get((event.spot_id, event.era_id))
            if entry is not None and isinstance(event, Imported) and entry.updated_at == event.ts:
                found[entry.key] = (entry.updated_at, event.created_at)
        return found

    def import_entries(self, source: str | os.PathLike[str] | bytes | ImportFile) -> ImportReport:
        """Turn an existing ``generated-videos.json`` (a path, its bytes, or what :func:`read_import` made
        of it) into ``imported`` events that keep each entry's timestamps. Entries already in the ledger are
        left as they are, so importing the same file twice changes nothing the second time. An invalid
        entry raises :class:`~ledger.errors.InvalidEntryError` naming its index in the array, and nothing is
        imported. To leave a directory without a ledger as it was when the file is refused, call
        :func:`read_import` before opening the ledger (what ``video-ledger import`` does)."""
        checked = source if isinstance(source, ImportFile) else read_import(source, ops=self._ops)
        entries, dropped = checked.entries, checked.dropped

        imported: list[tuple[str, str]] = []

        def plan_for(entry: VideoMetadata) -> Plan:
            def plan(current: VideoMetadata | None) -> lifecycle.Change | None:
                if current is not None:
                    return None  # already in the ledger: left as it is
                imported.append(entry.key)
                fields = {
                    "status": entry.status,
                    "prompt": entry.prompt,
                    "local_path": entry.local_path,
                    "error": entry.error,
                    "created_at": entry.created_at,
                    "completed_at": entry.completed_at,
                }
                return lifecycle.Change(Imported, fields)

            return plan

        self._commit([(e.key, plan_for(e)) for e in entries], importing=True)
        return ImportReport(
            imported=len(imported), already_present=len(entries) - len(imported), dropped=dropped
        )

    def verify_files(
        self, *, root: str | os.PathLike[str] | None = None, media: str | os.PathLike[str] | None = None
    ) -> FilesReport:
        """Check that every ready entry's file exists and still has the size and SHA-256 recorded when it
        became ready; with ``media``, also list the video files under that folder that no entry refers to.

        Files are checked only under ``root`` (default: the ledger directory), where each ``localPath`` is
        taken to start. An absolute ``localPath``, one that leaves the root through ``..`` or a symbolic
        link, and anything but a regular file (a directory, a FIFO, a device) is not read: it is reported
        as a problem for that entry. No more than the recorded size + 1 bytes of any file is read.
        """
        base = Path(root) if root is not None else self.directory
        real_root = os.path.realpath(base)
        entries: entries_view.Entries = {}
        files: files_view.ReadyFiles = {}
        for event in self._store.events():
            entries[event.key] = entries_view.apply(entries.get(event.key), event)
            files_view.note(files, event)
        problems: list[str] = []
        checked = 0
        for key in sorted(files):
            ready = files[key]
            checked += 1
            problem = _check_file(self._ops, real_root, ready)
            if problem is not None:
                problems.append(f"{key[0]}/{key[1]}: {ready.local_path}: {problem}")
        unreferenced: list[Path] = []
        if media is not None:
            referenced = {
                os.path.normpath(base / e.local_path) for e in entries.values() if e.local_path is not None
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
        return FilesReport(checked=checked, problems=problems, unreferenced=sorted(unreferenced))

    # -- history, rebuild, verify --------------------------------------------------------------------

    def history(
        self, spot_id: str | None = None, era_id: str | None = None, **filters: Unpack[HistoryFilters]
    ) -> Iterator[EventType]:
        """Every event in log order, optionally only one spot's, one era's or one entry's, and only those
        that pass ``filters``: after event ``since_seq``; between the times ``since`` and ``until`` (both
        included); that leave an entry with ``status``; of event ``type`` (``pending`` ... ``imported``)."""
        return map(operator.itemgetter(1), self.history_lines(spot_id, era_id, **filters))

    def history_lines(
        self,
        spot_id: str | None = None,
        era_id: str | None = None,
        *,
        since_seq: int | None = None,
        since: str | dt.datetime | None = None,
        until: str | dt.datetime | None = None,
        status: str | None = None,
        type: str | None = None,
    ) -> Iterator[tuple[bytes, EventType]]:
        """Like :meth:`history`, with each event's line exactly as stored (newline excluded)."""
        low = None if since is None else parse_time(since)
        high = None if until is None else parse_time(until)
        spot_id = None if spot_id is None else normalize_id(spot_id)
        era_id = None if era_id is None else normalize_id(era_id)
        for lines, events, _ in self._store.read():
            for line, event in zip(lines, events, strict=True):
                if high is not None and event.ts > high:
                    return  # times never go backwards: nothing later can match
                if (
                    (spot_id is None or event.spot_id == spot_id)
                    and (era_id is None or event.era_id == era_id)
                    and (since_seq is None or event.seq > since_seq)
                    and (low is None or event.ts >= low)
                    and (status is None or event.new_status == status)
                    and (type is None or event.type == type)
                ):
                    yield line, event

    # -- other views of the same events ----------------------------------------------------------------

    def entries_as_of(
        self, *, seq: int | None = None, time: str | dt.datetime | None = None
    ) -> list[VideoMetadata]:
        """The entries as they stood after event ``seq`` and/or at ``time`` (events at exactly that seq or
        time included): time travel through the log."""
        if seq is None and time is None:
            raise InvalidEntryError("give seq, time, or both")
        entries = entries_view.as_of(
            self._store.events(), seq=seq, ts=None if time is None else parse_time(time)
        )
        return [entries[key] for key in sorted(entries)]

    def timeline(self, spot_id: str, era_id: str) -> timeline_view.Timeline:
        """One entry's story: when it was queued, each attempt and how it ended, time to ready."""
        key = _key(spot_id, era_id)
        story = timeline_view.timeline(self._store.events(), *key)
        if story.first is None:
            raise EntryNotFoundError(f"no entry for spotId={spot_id!r} eraId={era_id!r}")
        return story

    def stats(self) -> stats_view.Stats:
        """Entries per status and era, attempts, success rate, generation times, frequent failures: one
        pass over the log in bounded memory."""
        return stats_view.stats(self._store.events())

    def wait_for(
        self, seq: int, *, timeout: float | None = None, stop_event: watch_view.StopEvent | None = None
    ) -> bool:
        """Return ``True`` once the snapshot includes event ``seq`` (written by a ``video-ledger watch``
        process or any inline writer); ``False`` after ``timeout`` seconds or once ``stop_event`` is set."""
        return watch_view.wait_for_seq(
            self.directory, seq, snapshot=self.snapshot_path, timeout=timeout, stop_event=stop_event
        )

    def follow(
        self,
        *,
        since_seq: int | None = None,
        stop_event: watch_view.StopEvent | None = None,
        on_caught_up: Callable[[int], None] | None = None,
    ) -> Iterator[tuple[bytes, EventType]]:
        """Each event with its stored line as it is appended, like ``tail -f``, until ``stop_event`` is set:
        after the events already in the log, or after event ``since_seq``. ``on_caught_up(seq)`` is called
        once the existing events are behind."""
        return watch_view.follow(
            self.directory,
            since_seq=since_seq,
            stop_event=stop_event,
            on_caught_up=on_caught_up,
            store=None if self._file_store else self._store,
        )

    def rebuild(self) -> RebuildReport:
        """Replay the whole log into a fresh snapshot (same bytes as the one kept current), checking each
        event's time order and lifecycle change as :meth:`verify` does: :class:`CorruptLogError` names
        the first line that breaks them, and the snapshot is left as it is."""
        self._check_writable()

        def checked(
            runs: snapshot_view.Runs,
        ) -> entries_view.KeyedRuns:  # the rules verify applies: the two agree
            problems: list[tuple[str, int]] = []

            def verdict() -> Iterator[tuple[list[tuple[str, str]], list[EventType]]]:  # at the end: raise
                if problems:
                    problem, seq = problems[0]
                    raise CorruptLogError(self._where, seq, f"{problem}; the snapshot was left as it is")
                yield from ()

            return entries_view.KeyedRuns(itertools.chain(_lawful_runs(runs, {}, problems), verdict()))

        with self._mutex:
            head = self._view.rebuild(checked)
            return RebuildReport(events=head.seq, entries=len(self._model.entries))

    def verify(self, *, expect_head: str | None = None) -> VerifyReport:
        """Walk the whole log checking every line's crc, ``seq``, chain hash, time order and lifecycle
        change, then the checkpoint and the snapshot against it. Reports the first problem; changes nothing.

        The snapshot, when there is one, must be the replay of the log at some event: at the checkpoint's
        when the checkpoint describes it (its size and CRC-32); at the checkpoint's or a later one when the
        checkpoint does not (a crash or a full disk between writing the two: harmless, said in ``note``),
        or at any event when ``checkpoint.json`` cannot be read (a power loss); at the end of the log when
        there is no ``checkpoint.json``.

        ``expect_head`` is a head ``SEQ:HASH`` an earlier verify reported (:attr:`VerifyReport.head`), kept
        where the ledger's host cannot rewrite it: the log's event ``SEQ`` must still hash to ``HASH`` (the
        log may have grown since), else that is the problem reported. A whole log rewritten with its chain
        recomputed passes every other check, but not this one."""
        anchor = None if expect_head is None else parse_head(expect_head)
        anchor_hash: str | None = GENESIS_HASH if anchor is not None and anchor[0] == 0 else None
        anchor_seen: list[str] = []  # the hash of the anchored event's line, once the walk meets it
        ref = snapshot_view.snapshot_ref(self.snapshot_path, self.checkpoint_path)
        checkpoint, other, snapshot, unreadable = self._read_pair_to_verify(ref)
        probe: _SnapshotProbe | None = None
        if snapshot is not None:
            if checkpoint is not None and snapshot_view.describes(checkpoint, snapshot):
                probe = _SnapshotProbe(snapshot, checkpoint.seq, exact=True)
            elif checkpoint is not None or self.checkpoint_path.exists():
                probe = _SnapshotProbe(snapshot, 0 if checkpoint is None else checkpoint.seq)
            else:
                probe = _SnapshotProbe(snapshot, 0, at_end=True)
        audit = self._store.check()
        statuses: dict[tuple[str, str], Status] = {}  # each entry's status so far
        problems: list[tuple[str, int]] = []
        skew = stats_view.SkewWatch()
        lawful = _lawful_runs((b.events for b in audit), statuses, problems)
        runs = _skew_watched((events for _, events in lawful), skew)
        if anchor is not None:
            runs = _anchored(runs, anchor[0], anchor_seen)
        try:
            if probe is not None:
                probe.run(itertools.chain.from_iterable(runs))
            for _ in runs:  # the rest is only checked
                pass
            problem, line = problems[0] if problems else (None, None)
        except CorruptLogError as exc:
            problem, line = exc.reason, exc.line
        end = audit.end
        head = self._durable_head(end) if problem is None else None
        note: str | None = None
        if problem is None and checkpoint is not None:
            problem = self._check_checkpoint(checkpoint, end)
        if problem is None and probe is not None:
            problem, note = self._judge_snapshot(probe, checkpoint, end, other)
        if problem is None and unreadable is not None:
            problem = unreadable
        elif problem is None and snapshot is None and checkpoint is not None:
            problem = f"the snapshot {self.snapshot_path} is missing, but its checkpoint is there"
        if problem is None and anchor is not None:
            problem = _check_anchor(anchor, end, anchor_seen[0] if anchor_seen else anchor_hash)
        return VerifyReport(
            events=end.seq if line is None else min(end.seq, line),  # a run may reach past the problem
            entries=len(statuses),
            problem=problem,
            line=line,
            torn=audit.torn if problem is None else None,
            checkpoint_seq=None if checkpoint is None else checkpoint.seq,
            head=head,
            snapshot_seq=None if probe is None or problem is not None else probe.match,
            note=note,
            skew=skew.result(),
            non_nfc=self._non_nfc(statuses),
        )

    def _non_nfc(self, keys: Collection[tuple[str, str]]) -> str | None:
        """Why some ids are not in NFC, if some are: the entries' keys (not the events) are checked, first
        all at once in C (ASCII is NFC), then one by one only if some id is not ASCII; only when one is
        found is the log read again for its first event."""
        if "".join(itertools.chain.from_iterable(keys)).isascii():
            return None
        odd = {key for key in keys if not (key[0].isascii() and key[1].isascii()) and _key(*key) != key}
        if not odd:
            return None
        first = next((event.seq for event in self._store.events() if event.key in odd), None)
        return (
            f"{len(odd)} entries have an id not in NFC (written before ids were normalised), the first at "
            f"event {first}: reach them by that exact spelling; an NFC spelling of it finds nothing"
        )

    def _read_pair_to_verify(
        self, ref: str
    ) -> tuple[snapshot_view.Checkpoint | None, bool, bytes | None, str | None]:
        """The checkpoint (``None`` if it describes another snapshot: then ``other``), the snapshot's bytes
        and why they cannot be read, if so. A projector renames the snapshot, then the checkpoint: when the
        two disagree, they are read again once no projector holds the projection lock (as an open does,
        :meth:`ledger.projector.Projector.load`), so a projector at work is not reported as a crash."""

        def read() -> tuple[snapshot_view.Checkpoint | None, bool, bytes | None, str | None]:
            # the checkpoint first: a snapshot read after it is as new as it, or newer
            checkpoint = snapshot_view.read_checkpoint(self.checkpoint_path, self._ops)
            other = checkpoint is not None and (checkpoint.snapshot != ref or checkpoint.v != FORMAT_VERSION)
            try:
                snapshot = snapshot_view.read_untrusted(self.snapshot_path, self._ops)
            except OSError as exc:
                return (
                    None if other else checkpoint,
                    other,
                    None,
                    (f"the snapshot {self.snapshot_path} cannot be read ({exc.strerror})"),
                )
            return None if other else checkpoint, other, snapshot, None

        pair = read()
        for attempt in range(snapshot_view.PAIR_TRIES):
            checkpoint, _, snapshot, _ = pair
            if checkpoint is None or snapshot is None or snapshot_view.describes(checkpoint, snapshot):
                break
            if self._view.lock.acquire(shared=True, wait=False):  # no projector is between its renames
                try:
                    pair = read()  # what it left (a crash or a full disk between the two: the note says so)
                finally:
                    self._view.lock.release()
                break
            time.sleep(min(0.001 * 2**attempt, 0.05))
            pair = read()
        return pair

    def _durable_head(self, end: Head) -> str:
        """The head to keep: that of the last durable event (:meth:`ledger.backend.EventStore.head`), at
        most ``end``. Lines beyond the fsynced size on record were left by a writer that died before its
        fsync, and a power loss may still take them: a head kept from one would read as a rewrite once
        another event takes its seq."""
        durable = self._store.head()
        return f"{durable.seq}:{durable.hash}" if durable.seq < end.seq else f"{end.seq}:{end.hash}"

    def _check_checkpoint(self, checkpoint: snapshot_view.Checkpoint, end: Head) -> str | None:
        """Why ``checkpoint`` does not fit the log that ends at ``end`` (every field it gives a writer:
        ``offset``, ``seq``, ``lastHash``, ``lastTs``, against the line at ``offset``)."""
        if checkpoint.seq > end.seq or checkpoint.offset > end.at:
            return (
                f"the log ends at event {end.seq} but the snapshot's checkpoint is at event "
                f"{checkpoint.seq}: "
                "trailing events are missing from the log"
            )
        found = self._store.at(checkpoint.head)
        if found is None or found[:3] != checkpoint.head[:3]:
            return f"the snapshot's checkpoint (event {checkpoint.seq}) does not match the log"
        return None

    def _judge_snapshot(
        self, probe: _SnapshotProbe, checkpoint: snapshot_view.Checkpoint | None, end: Head, other: bool
    ) -> tuple[str | None, str | None]:
        """The problem with the snapshot (or ``None``), and a note on a harmless state it is in."""
        probe.finish(end.seq)
        where = self.snapshot_path
        if probe.match is None:
            if probe.exact:
                return f"the snapshot {where} is not the replay of the log up to event {probe.low}", None
            if not probe.at_end:
                return (
                    f"the snapshot {where} is not the replay of the log at any event from {probe.low} on "
                    "(and its checkpoint does not describe it)"
                ), None
            unheld = probe.unheld()
            adopt = (
                f"; it holds {unheld} entries the log does not: adopt them with `video-ledger --dir "
                f"{self.directory} import {where}`"
                if unheld
                else ""
            )
            return f"the snapshot {where} has no checkpoint and is not the replay of the log{adopt}", None
        if probe.exact or probe.at_end:
            return None, None
        if checkpoint is None:
            why = "describes another snapshot" if other else "cannot be read (what a power loss can leave)"
            return None, (
                f"{self.checkpoint_path.name} {why}; the snapshot is the replay of the log at event "
                f"{probe.match}; the next writer rewrites the checkpoint"
            )
        return None, (
            f"the checkpoint (event {checkpoint.seq}) is behind the snapshot, which is the replay of the log "
            f"at event {probe.match}: a crash or a full disk came between writing the two (harmless); the "
            "next writer rewrites the checkpoint"
        )

    # -- lifecycle of the handle ---------------------------------------------------------------------

    def head(self) -> Head:
        """Where the log ends as this handle reads it: the last durable event's ``seq``, hash and time."""
        with self._mutex:
            self._view.refresh()
            return self._model.head

    def close(self) -> None:
        """Release the files this handle holds open. Further writes raise :class:`LedgerClosedError`."""
        with self._mutex:
            self._store.close()
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
        """Create the directory if missing, load the state, settle what other writers left in the store
        (:meth:`_settle`), and bring the snapshot up to date."""
        self._view.refuse_symlinked_snapshot()
        try:
            self._ops.make_dirs(self.directory)  # each new directory's entry fsynced in its parent
        except OSError as exc:
            raise io_error("create the ledger directory", self.directory, exc) from None
        if not self.directory.is_dir():
            raise LedgerIOError(f"cannot use {self.directory}: it is not a directory")
        with self._mutex:
            self._view.refresh()  # first: a checkpoint in doubt is judged before the log is touched
            self._settle()
            if self.projection == "inline":
                try:
                    self._view.project()
                except UnimportedSnapshotError as exc:  # left as it is; writes other than import refuse
                    log.info("%s", exc)
                except LedgerIOError as exc:
                    # The snapshot cannot be brought up to date now (a full disk...). An inline writer still
                    # records: the log is the truth, and each write's own projection says whether it managed
                    # (SnapshotUpdateError: recorded, snapshot behind). docs/guarantees.md.
                    log.warning(
                        "%s is behind the log: %s; writes are still recorded", self.snapshot_path, exc
                    )

    def _settle(self) -> None:
        """Append nothing: the store makes what other writers left durable before it returns (the file
        store, at its first append: creates the log, sets a torn tail aside, moves staged lines in, fsyncs),
        and the model takes in what it was shown."""
        changed: entries_view.Entries = {}

        def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            changed.clear()
            for record in unseen:
                key = record.event.key
                changed[key] = entries_view.apply(
                    changed.get(key) or self._model.entries.get(key), record.event
                )
            return []

        for _ in range(_RETRIES):
            try:
                head = self._store.append(self._model.head, decide)
            except ConflictError:
                self._model.invalidate()
                self._view.refresh()
                continue
            self._model.advance(changed, head)
            return
        raise LedgerIOError("cannot open: other writers' commits kept failing")

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyLedgerError(f"{self.directory} was opened read-only")
        if self._unusable is not None:
            raise LedgerClosedError(f"this ledger handle accepts no more writes: {self._unusable}")

    def _now(self, last: Head) -> tuple[str, str | None]:
        """This commit's time and, when the clock reads earlier than the last event's time, the reading
        (recorded as the events' ``clock``; the time is then the last event's). Raises
        :class:`ClockSkewError` for a reading more than :data:`MAX_CLOCK_LEAD` after the last event."""
        moment = self._clock()
        reading = format_ts(moment)
        if reading < last.ts:
            behind = dt.datetime.fromisoformat(last.ts) - moment
            if behind > _CLAMP_WARNING:
                log.warning(
                    "clock skew: this clock reads %s, %s before the log's last event (event %d at %s); "
                    "recorded at that time, with this clock's reading kept in the event",
                    reading, stats_view.describe_span(behind.total_seconds()), last.seq, last.ts,
                )  # fmt: skip
            return last.ts, reading
        if last.ts and not self.force_clock:
            ahead = moment - dt.datetime.fromisoformat(last.ts)
            if ahead > MAX_CLOCK_LEAD:
                raise ClockSkewError(
                    f"this clock reads {reading}, {stats_view.describe_span(ahead.total_seconds())} after "
                    f"the log's last event (event {last.seq} at {last.ts}); a time that far ahead "
                    f"would become every later event's time, so more than {MAX_CLOCK_LEAD.days} days is "
                    "refused. Check this host's "
                    "clock; if it is right and the ledger was idle since then, repeat with force_clock=True "
                    "(--force-clock)",
                    clock=reading,
                    last=last.ts,
                    seq=last.seq,
                )
        return reading, None

    def _write(self, key: tuple[str, str], plan: Plan) -> VideoMetadata:
        after = self._commit([(key, plan)])[0]
        assert after is not None
        return after

    def _commit(
        self, requests: Sequence[tuple[tuple[str, str], Plan]], *, importing: bool = False
    ) -> list[VideoMetadata | None]:
        """Plan every request against the latest state under the store's lock and append all their events
        at once (:meth:`ledger.backend.EventStore.append`: one group-commit submission in the file store),
        durable on return, then project once. If any plan raises, nothing is written. Returns each entry
        after its request (``None`` for a plan that declined an entry that does not exist). Unless
        ``importing``, refuses (:class:`UnimportedSnapshotError`) while the snapshot holds entries the log
        does not."""
        self._check_writable()
        with self._mutex:
            for _ in range(_RETRIES):
                try:
                    outcome = self._submit(requests, importing)
                except LedgerIOError as exc:
                    raise _not_recorded(exc) from None
                if outcome is not None:
                    break
            else:
                raise LedgerIOError("cannot record: other writers' commits kept failing")
            results, seq = outcome
            if self.projection == "deferred":
                return results
            try:
                self._view.project()
            except LedgerIOError as exc:
                if seq is None:
                    raise
                raise SnapshotUpdateError(
                    f"event {seq} was recorded, but {exc}; retrying the call (it records nothing "
                    "more) or `video-ledger rebuild` brings the snapshot up to date",
                    seq=seq,
                ) from None
            return results

    def _submit(
        self, requests: Sequence[tuple[tuple[str, str], Plan]], importing: bool = False
    ) -> tuple[list[VideoMetadata | None], int | None] | None:
        """One try of :meth:`_commit` up to the fsync: the results and the last new ``seq`` (``None`` if
        nothing was written), or ``None`` when what the plan was shown turned out not to be recorded
        (another writer's commit failed, :class:`~ledger.errors.ConflictError`): then try again.

        The plan runs under the store's lock (:meth:`ledger.backend.EventStore.append`) against this
        handle's entries and the records after its head that it had not read yet; the entries and head
        move on only once the store says every one of those records is durable."""
        view, model = self._view, self._model
        view.ready()
        known = model.head
        changed: entries_view.Entries = {}  # the entries the unseen records and this commit change
        results: list[VideoMetadata | None] = []
        wrote = False

        def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            nonlocal wrote
            changed.clear()
            results.clear()
            for record in unseen:
                key = record.event.key
                changed[key] = entries_view.apply(changed.get(key) or model.entries.get(key), record.event)
            if not importing and view.unimported(changed):
                raise UnimportedSnapshotError(
                    f"{self.snapshot_path} holds {view.unimported(changed)} entries that the log does not "
                    "(the app's own file, not imported yet?); nothing was recorded: run `video-ledger "
                    f"--dir {self.directory} import {self.snapshot_path}` to adopt them first"
                )
            records: list[Record] = []
            seq, prev = tip.seq, tip.hash
            ts, clock = "", None  # one commit, one instant: read at its first change (none: no reading)
            for given, plan in requests:
                key = _stored_key(_key(*given), given, changed, model.entries)
                current = changed.get(key) or model.entries.get(key)
                change = plan(current)
                if change is None:
                    results.append(current)
                    continue
                if not ts:
                    ts, clock = self._now(tip)
                seq += 1
                event = change.cls(
                    v=FORMAT_VERSION, seq=seq, ts=ts, spot_id=key[0], era_id=key[1], prev=prev, clock=clock,
                    **change.fields,
                )  # fmt: skip
                line = encode_line(event)[:-1]
                records.append(Record(seq, line, event))
                prev = line_hash(line)
                changed[key] = entries_view.apply(current, event)
                results.append(changed[key])
            wrote = bool(records)
            return records

        try:
            head = self._store.append(known, decide)
        except ConflictError:
            model.invalidate()
            return None
        except DurabilityError as exc:
            self._unusable = str(exc)
            raise
        model.advance(changed, head)
        if not wrote:
            return results, None
        self.last_seq = head.seq
        return results, head.seq


_HEAD = re.compile(r"([0-9]{1,19}):([0-9a-f]{64})")


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as :attr:`VerifyReport.head` prints it) as ``(seq, hash)``; raises
    :class:`~ledger.errors.InvalidEntryError` for anything else."""
    match = _HEAD.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidEntryError(
            f"a head is SEQ:HASH (an event's seq, a colon, 64 hex digits, as verify prints it), not {text!r}"
        )
    return int(match.group(1)), match.group(2)


def _check_anchor(anchor: tuple[int, str], end: Head, found: str | None) -> str | None:
    """Why the log does not hold the anchored head ``anchor``, if it does not. ``found`` is the hash of
    the line of event ``anchor[0]`` where the walk saw it (before the log's last line)."""
    seq, expected = anchor
    if seq > end.seq:
        return (
            f"the log ends at event {end.seq}, before the expected head {seq}:{expected}: "
            "events were removed (or this is another ledger)"
        )
    actual = end.hash if seq == end.seq else found
    if actual != expected:
        return (
            f"event {seq} hashes to {actual}, not to the expected head {seq}:{expected}: "
            f"the log up to event {seq} was rewritten (or this is another ledger)"
        )
    return None


def _resolve_store(
    directory: str | os.PathLike[str] | None,
    store: EventStore | str | os.PathLike[str] | None,
    *,
    readonly: bool,
    ops: FileOps | None,
    follow_symlinks: bool,
) -> tuple[str | os.PathLike[str] | None, EventStore | None, bool]:
    """The ledger directory and the store a :class:`Ledger` (or :func:`watch`) is given, a spec opened (or
    ``$VIDEO_LEDGER_STORE`` when ``store`` is ``None``); ``None``: the file store in the directory. The
    third value: whether the store was opened here (and is to be closed if the caller fails)."""
    if isinstance(store, EventStore):
        return directory, store, False
    from_env = store is None
    spec = store_spec(store)
    if spec is None:
        return directory, None, False
    if is_url(spec):
        return directory, open_store(spec), True
    check_store_spec(spec)
    if directory is None or same_directory(directory, spec):
        return spec, None, False  # a directory store is the ledger directory
    if from_env:
        raise InvalidEntryError(
            f"${STORE_ENV} names the directory {os.fspath(spec)} and the ledger directory is "
            f"{os.fspath(directory)}: a file store's events live in the ledger directory, give one of them"
        )
    return directory, open_store(spec, readonly=readonly, ops=ops, follow_symlinks=follow_symlinks), True


def _where(store: EventStore) -> Path:
    """How errors name ``store``: its file (the file store), or what it calls itself."""
    where = getattr(store, "path", None) or getattr(store, "where", None)
    return where if isinstance(where, Path) else Path(f"<{type(store).__name__}>")


def _not_recorded(exc: LedgerIOError) -> LedgerIOError:
    """``exc``, saying that nothing was recorded (an error before the fsync leaves no event in the log)."""
    if "not recorded" not in str(exc):
        exc.args = (f"{exc}; nothing was recorded",)
    return exc


_IMPORTED_FIELDS = frozenset(
    ("spotId", "eraId", "prompt", "localPath", "status", "createdAt", "completedAt", "error")
)
"""The fields of an imported entry that its ``imported`` event keeps."""


class _SnapshotProbe:
    """Finds an event after which the replay of the log is exactly the snapshot's bytes ``data``: event
    ``low`` (``exact``), the last one (``at_end``), or else any from ``low`` on. :meth:`run` takes the
    log's events and folds them in one pass (a fold builds each entry once), only as far as it needs to."""

    def __init__(self, data: bytes, low: int, *, exact: bool = False, at_end: bool = False) -> None:
        self.data, self.low, self.exact, self.at_end = data, low, exact, at_end
        self.state: entries_view.Entries = {}
        self.match: int | None = None

    def _same(self) -> bool:
        return snapshot_view.encode_snapshot(self.state) == self.data

    def run(self, events: Iterator[EventType]) -> None:
        """Fold ``events`` (the log's, from the start) as far as needed; :attr:`match` is then set, except
        ``at_end`` (:meth:`finish`)."""
        if self.exact:
            self.state = entries_view.fold(itertools.islice(events, self.low))
            self.match = self.low if self._same() else None
            return
        if self.at_end:
            self.state = entries_view.fold(events)
            return
        if self.low == 0 and self._same():
            self.match = 0
            return
        items = snapshot_view.decode_snapshot(self.data)
        stamps = [] if items is None else [item.updated_at for item in items]
        if items is None or None in stamps:
            return  # not a snapshot the ledger wrote: it is no replay
        wanted = {item.key: item for item in items}
        last_ts = max(filter(None, stamps), default="")  # in a replay: the time of the last event in it
        stash: list[EventType] = []

        def earlier() -> Iterator[EventType]:  # the events before the snapshot's newest time
            for event in events:
                if event.ts >= last_ts:
                    stash.append(event)
                    return
                yield event

        state = self.state = entries_view.fold(earlier())
        differ: set[tuple[str, str]] | None = None
        for event in itertools.chain(stash, events):
            if event.ts > last_ts:  # from here on an entry is newer than any in the snapshot
                return
            key = event.key
            state[key] = entries_view.apply(state.get(key), event)
            if event.seq < self.low:
                continue
            if differ is None:
                differ = {k for k in state.keys() | wanted.keys() if state.get(k) != wanted.get(k)}
            elif state[key] == wanted.get(key):
                differ.discard(key)
            else:
                differ.add(key)
            if not differ and self._same():
                self.match = event.seq
                return

    def finish(self, end: int) -> None:
        if self.at_end:
            self.match = end if self._same() else None

    def unheld(self) -> int:
        """How many entries of the snapshot the replay does not hold."""
        return len(snapshot_view.untrusted_keys(self.data).difference(self.state))


def _lawful_runs(
    runs: Iterable[list[EventType]], statuses: dict[tuple[str, str], Status], problems: list[tuple[str, int]]
) -> Iterator[tuple[list[tuple[str, str]], list[EventType]]]:
    """The events of ``runs`` with their keys, up to the first one whose time or lifecycle change is wrong;
    that one's reason and ``seq`` are appended to ``problems``. ``statuses`` is each entry's status so far.
    The keys are computed once here and passed on (:class:`projections.entries.KeyedRuns`)."""
    last_ts = ""
    for events in runs:
        times = list(map(_ts_of, events))
        keys = list(map(_key_of, events))
        late = next(  # the first event whose time is before the one before it
            itertools.compress(itertools.count(), map(operator.lt, times, [last_ts, *times])), None
        )
        illegal = (
            lifecycle.first_illegal(events, statuses, keys)
            if late is None
            else lifecycle.first_illegal(events[:late], statuses, keys[:late])
        )
        if (  # at the late event itself, its change is checked first
            illegal is None
            and late is not None
            and lifecycle.first_illegal([events[late]], dict(statuses)) == 0
        ):
            illegal = late
        if illegal is not None:
            event = events[illegal]
            before = statuses.get(event.key)
            problems.append((f"illegal change {before or 'new'} -> {event.type}", event.seq))
        elif late is not None:
            event = events[late]
            before_ts = times[late - 1] if late else last_ts
            problems.append((f"time goes backwards ({event.ts} after {before_ts})", event.seq))
        if problems:
            cut = problems[0][1] - events[0].seq
            yield keys[:cut], events[:cut]
            return
        yield keys, events
        last_ts = times[-1]


def _skew_watched(runs: Iterator[list[EventType]], skew: stats_view.SkewWatch) -> Iterator[list[EventType]]:
    """``runs`` as they are, shown to ``skew`` (which sees only lawful runs: their times never decrease)."""
    for events in runs:
        if events:
            skew.add_run(events, list(map(_ts_of, events)))
        yield events


def _anchored(runs: Iterator[list[EventType]], seq: int, seen: list[str]) -> Iterator[list[EventType]]:
    """``runs`` as they are, noting in ``seen`` the hash of event ``seq``'s line where the walk meets it:
    the chain is checked, so the next line's ``prev`` is that hash."""
    for events in runs:
        if events and events[0].seq <= seq + 1 <= events[-1].seq:
            seen.append(events[seq + 1 - events[0].seq].prev)
        yield events


def _plan_to(desired: VideoMetadata) -> Plan:
    """The plan that takes an entry, whatever it is then, to ``desired`` (or refuses to)."""
    return lambda current: lifecycle.plan_change(current, desired)


MAX_IMPORT_BYTES: Final = 1 << 32
"""An import file larger than 4 GiB is refused before it is read (a snapshot of a million entries is
about 300 MB)."""


def read_import(source: str | os.PathLike[str] | bytes, *, ops: FileOps | None = None) -> ImportFile:
    """Read and check a ``generated-videos.json`` to import (a path, or its bytes) without touching any
    ledger: every entry valid, with its ``createdAt``, each ``(spotId, eraId)`` once. Raises
    :class:`~ledger.errors.InvalidEntryError` naming the entry's index, or
    :class:`~ledger.errors.LedgerIOError`; :meth:`Ledger.import_entries` takes the result."""
    ops = ops or FileOps()
    data = source if isinstance(source, bytes) else _read_import(ops, Path(os.fsdecode(source)))
    items = _decode_import(data)
    if not isinstance(items, list):
        raise InvalidEntryError("the file to import must hold a JSON array of entries")
    entries: list[VideoMetadata] = []
    dropped: dict[str, int] = {}
    for index, item in enumerate(items):
        for name in item if isinstance(item, dict) else ():
            if name not in _IMPORTED_FIELDS:
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
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise InvalidEntryError(
            f"entry {keys.index(dup, keys.index(dup) + 1)}: {dup[0]}/{dup[1]} appears twice"
        )
    return ImportFile(entries=tuple(entries), dropped=dropped)


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


def _check_file(ops: FileOps, root: str, ready: Ready) -> str | None:
    """What is wrong with the file a ``ready`` event recorded, looked for under ``root`` (a real path), or
    ``None``. Nothing outside ``root`` and nothing but a regular file is opened or measured."""
    if "\0" in ready.local_path:  # writers refuse it; a line written by hand may hold one
        return "holds a NUL byte, which no file name can (not read)"
    if os.path.isabs(ready.local_path):
        return f"an absolute path, outside the root {root} (not read)"
    if _leaves(root, os.path.normpath(os.path.join(root, ready.local_path))):
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
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        ops.close(fd)
    if read != expected:
        return f"size changed while it was read ({read} bytes, {expected} when it became ready)"
    if digest.hexdigest() != ready.sha256:
        return "content changed since it became ready (SHA-256 differs)"
    return None


def _leaves(root: str, path: str) -> bool:
    """Whether ``path`` (absolute, normalised) is outside the directory ``root``."""
    return os.path.commonpath([root, path]) != root


def _human(span: dt.timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _key(spot_id: object, era_id: object) -> tuple[str, str]:
    if not isinstance(spot_id, str) or not isinstance(era_id, str) or not spot_id or not era_id:
        raise InvalidEntryError(f"spotId and eraId must be non-empty strings, not {spot_id!r} and {era_id!r}")
    return (normalize_id(spot_id), normalize_id(era_id))  # as stored: canonically equal ids are one


def _given_ids(spot_id: object, era_id: object) -> tuple[str, str]:
    """The ids as given (checked as :func:`_key` checks them): a write's request names the entry so, and
    :func:`_stored_key` picks the spelling under the lock."""
    _key(spot_id, era_id)
    return spot_id, era_id  # type: ignore[return-value]  # strings: _key checked


def _given_key(entry: VideoMetadata | Mapping[str, Any], desired: VideoMetadata) -> tuple[str, str]:
    """The ids of ``entry`` as given (``desired`` is its validated copy, ids in NFC)."""
    ids = (
        (entry.spot_id, entry.era_id)
        if isinstance(entry, VideoMetadata)
        else (entry["spotId"], entry["eraId"])
    )
    return ids if isinstance(ids[0], str) and isinstance(ids[1], str) else desired.key


def _stored_key(
    key: tuple[str, str], given: tuple[str, str], *held: Mapping[tuple[str, str], object]
) -> tuple[str, str]:
    """The key an entry is held under: ``key`` (the ids in NFC), unless no entry has it but one has the
    exact ``given`` spelling, which a log written before ids were normalised holds (``docs/format.md``).
    Then the old entry stays reachable and no twin is made. Per lookup, never per replayed event."""
    if given == key or any(key in entries for entries in held) or not any(given in e for e in held):
        return key
    return given


# -- module-level twins acting on the default ledger ($VIDEO_LEDGER_DIR, else ./data) --------------------

_defaults: dict[Path, Ledger] = {}
_defaults_mutex = threading.Lock()


def default_ledger() -> Ledger:
    """The ledger in :func:`default_directory` (or the directory ``$VIDEO_LEDGER_STORE`` names, as on the
    command line), opened once per directory and process."""
    spec = store_spec(None)
    directory = (Path(spec) if spec is not None and not is_url(spec) else default_directory()).absolute()
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


def mark_video_failed(spot_id: str, era_id: str, error: str, *, attempt: int | None = None) -> VideoMetadata:
    """:meth:`Ledger.mark_video_failed` on the default ledger."""
    return default_ledger().mark_video_failed(spot_id, era_id, error, attempt=attempt)


def history(
    spot_id: str | None = None, era_id: str | None = None, **filters: Unpack[HistoryFilters]
) -> Iterator[EventType]:
    """:meth:`Ledger.history` on the default ledger."""
    return default_ledger().history(spot_id, era_id, **filters)


def rebuild() -> RebuildReport:
    """:meth:`Ledger.rebuild` on the default ledger."""
    return default_ledger().rebuild()


def verify(*, expect_head: str | None = None) -> VerifyReport:
    """:meth:`Ledger.verify` on the default ledger."""
    return default_ledger().verify(expect_head=expect_head)


def mark_video_ready(
    spot_id: str,
    era_id: str,
    local_path: str,
    *,
    size: int | None = None,
    sha256: str | None = None,
    attempt: int | None = None,
) -> VideoMetadata:
    """:meth:`Ledger.mark_video_ready` on the default ledger."""
    return default_ledger().mark_video_ready(
        spot_id, era_id, local_path, size=size, sha256=sha256, attempt=attempt
    )


def generation(
    spot_id: str, era_id: str, prompt: str, *, local_path: str | None = None, takeover: int | None = None
) -> contextlib.AbstractContextManager[pipeline.Job]:
    """:meth:`Ledger.generation` on the default ledger."""
    return default_ledger().generation(spot_id, era_id, prompt, local_path=local_path, takeover=takeover)


def generate_and_store_video(
    spot_id: str,
    era_id: str,
    prompt: str,
    generate: Callable[[], str | os.PathLike[str]],
    *,
    local_path: str | Callable[[Path], str] | None = None,
) -> VideoMetadata:
    """:meth:`Ledger.generate_and_store_video` on the default ledger."""
    return default_ledger().generate_and_store_video(spot_id, era_id, prompt, generate, local_path=local_path)


def reap(older_than: dt.timedelta, *, now: dt.datetime | None = None) -> list[VideoMetadata]:
    """:meth:`Ledger.reap` on the default ledger."""
    return default_ledger().reap(older_than, now=now)


# -- the live projector and the snapshot format, for the command line -------------------------------------


def watch(
    directory: str | os.PathLike[str] | None = None,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    stop_event: watch_view.StopEvent | None = None,
    step: int = 20,
    debounce: int = 100,
    on_project: Callable[[int], None] | None = None,
    store: EventStore | str | os.PathLike[str] | None = None,
) -> int:
    """Keep the snapshot of the ledger in ``directory`` current until ``stop_event`` is set (the live
    projector, for writers that defer projection); returns the number of snapshots written. ``store`` as
    :class:`Ledger` takes it (a URL: every app host runs one watcher on its own directory over the shared
    store). See :func:`ledger.watch.watch`."""
    directory, given, opened = _resolve_store(
        directory, store, readonly=True, ops=None, follow_symlinks=False
    )
    try:
        return watch_view.watch(
            directory,
            snapshot=snapshot,
            stop_event=stop_event,
            step=step,
            debounce=debounce,
            on_project=on_project,
            store=given,
        )
    finally:
        if opened and given is not None:
            given.close()


def encode_entries(entries: Iterable[VideoMetadata]) -> bytes:
    """``entries`` in the snapshot's format (the bytes of ``generated-videos.json`` holding them)."""
    return snapshot_view.encode_snapshot({e.key: e for e in entries})


def save_entries(path: str | os.PathLike[str], entries: Iterable[VideoMetadata]) -> None:
    """Write ``entries`` in the snapshot's format to ``path`` by atomic replace (fsynced)."""
    target = Path(path)
    try:
        atomic_write(FileOps(), target, encode_entries(entries), label="output")
    except OSError as exc:
        raise io_error("write", target, exc) from None
