"""The store API: :class:`Ledger`, a façade over the rooms that do the work.

A :class:`Ledger` is a directory holding ``events.jsonl`` (the history, append-only) and, by default,
``generated-videos.json`` (the current view, kept current by the projector). Each write validates its
request, asks :mod:`ledger.requests` for the plan, and hands it to the :class:`~ledger.writer.Writer`,
which checks it against the lifecycle under the store's lock, appends it durably and projects the
snapshot before the call returns. Reads see every write that returned before them, from any process.
The audit is :mod:`ledger.audit`, the video files :mod:`ledger.media`, imports :mod:`ledger.importing`,
the default ledger and the task card's module-level functions :mod:`ledger.default`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Unpack

from ledger import audit, pipeline, requests
from ledger import watch as watch_room
from ledger.audit import VerifyReport, parse_head
from ledger.claiming import WorkLoop
from ledger.errors import InvalidEntryError, NoLedgerError
from ledger.events import (
    Clock,
    EventType,
    Usage,
    VideoMetadata,
    parse_time,
    utc_now,
    validate_entry,
)
from ledger.importing import ImportFile, ImportReport, read_import
from ledger.layout import Layout
from ledger.media import FilesReport, MediaMap, verify_files
from ledger.projector import encode_entries, save_entries
from ledger.provenance import event_records
from ledger.provenance_api import ProvenanceAPI
from ledger.stores import EventStore, FileOps, Head, Progress, open_chosen, reported, warn_if_beside
from ledger.writer import MAX_CLOCK_LEAD, Writer
from projections import entries as entries_view
from projections import history as history_view
from projections import stats as stats_view
from projections import timeline as timeline_view
from projections.history import HistoryFilters, HistoryOptions

if TYPE_CHECKING:  # imported by proofs(), its one user: a command that proves nothing does not pay for it
    from ledger.proofs import Proofs

GROUP_BY: Final = stats_view.GROUP_BY
"""What ``stats_by`` groups attempts by: ``model``, ``era``, ``spot``."""

__all__ = (
    "GROUP_BY",
    "MAX_CLOCK_LEAD",
    "FilesReport",
    "HistoryFilters",
    "ImportFile",
    "ImportReport",
    "Ledger",
    "RebuildReport",
    "Timeline",
    "VerifyReport",
    "encode_entries",
    "parse_head",
    "read_import",
    "save_entries",
    "watch",
)

Timeline = timeline_view.Timeline
"""What :meth:`Ledger.timeline` returns."""

log = logging.getLogger("ledger")


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What :meth:`Ledger.rebuild` replayed and wrote."""

    events: int
    entries: int


class Ledger(ProvenanceAPI, WorkLoop):
    """A generation ledger in ``directory`` (its work loop: :class:`~ledger.claiming.WorkLoop`).

    Parameters
    ----------
    directory:
        Holds ``events.jsonl``, its lock file and ``checkpoint.json``. Default: :func:`default_directory`.
        Created (with parents) unless ``readonly`` or not ``create``.
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
    create:
        ``False``: open only a ledger that exists, as ``readonly`` does (NoLedgerError, nothing created).
    projection:
        ``"inline"`` (default): every write brings the snapshot up to date before it returns (a refused
        one leaves every file as it was, the snapshot behind included).
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
        create: bool = True,
        projection: Literal["inline", "deferred"] = "inline",
        follow_symlinks: bool = False,
        ops: FileOps | None = None,
        store: EventStore | str | os.PathLike[str] | None = None,
    ) -> None:
        if projection not in ("inline", "deferred"):
            raise InvalidEntryError(f"projection must be 'inline' or 'deferred', not {projection!r}")
        directory, given, opened = open_chosen(
            directory, store, readonly=readonly, ops=ops, follow_symlinks=follow_symlinks
        )
        try:
            self.layout = Layout.of(directory, snapshot, follow_symlinks=follow_symlinks)
            if (problem := self.layout.snapshot_problem()) is not None:
                raise InvalidEntryError(problem)
            projector = watch_room.open_projector(
                self.layout, ops=ops, follow_symlinks=follow_symlinks, store=given
            )
            self._writer = Writer(
                projector, directory=self.layout.directory, clock=clock or utc_now, force_clock=force_clock,
                projection=projection, readonly=readonly, ops=projector.ops,
            )  # fmt: skip
            self._open(given is not None, create and not readonly)
        except BaseException:
            if opened and given is not None:
                given.close()
            raise

    def _open(self, given: bool, create: bool) -> None:
        """Name the parts, then open for writing (:meth:`ledger.writer.Writer.open`) unless read-only; a
        ledger that is not there is made only if ``create``."""
        self.directory = self.layout.directory
        self.log_path = self.layout.log
        self.snapshot_path = self.layout.snapshot
        self.checkpoint_path = self.layout.checkpoint
        self.follow_symlinks = self._writer.projector.follow_symlinks
        self._projector = self._writer.projector
        self._store = self._projector.store
        self._model = self._projector.model
        self._mutex = self._writer.mutex
        self._file_store = not given
        self.projection, self.readonly = self._writer.projection, self._writer.readonly
        self.force_clock = self._writer.force_clock
        if given:
            warn_if_beside(self.log_path, self._projector.where)
        if not (create or self._writer.holds_ledger()):
            raise NoLedgerError(f"no ledger at {self.directory} (it holds no {self.log_path.name})")
        if not self.readonly:
            self._writer.open()

    @property
    def last_seq(self) -> int | None:
        """``seq`` of the last event this handle appended (``None`` before its first)."""
        return self._writer.last_seq

    @property
    def unusable(self) -> str | None:
        """Why this handle accepts no more writes (closed, or an fsync failed), if it does not."""
        return self._writer.unusable

    # -- the card's functions ------------------------------------------------------------------------

    def get_all_video_metadata(self) -> list[VideoMetadata]:
        """Every entry, ordered by ``(spotId, eraId)``."""
        with self._mutex:
            self._writer.catch_up()
            self._writer.refuse_unimported()
            entries = self._model.entries
            return [entries[key] for key in sorted(entries)]

    def get_video_metadata(self, spot_id: str, era_id: str) -> VideoMetadata | None:
        """The entry for ``(spot_id, era_id)``, or ``None``."""
        key = requests.key(spot_id, era_id)
        with self._mutex:
            if _fresh_reader(self):
                return _one_entry(self.history(spot_id, era_id))
            self._writer.catch_up()
            self._writer.refuse_unimported()
            entries = self._model.entries
            return entries.get(requests.stored_key(key, (spot_id, era_id), entries))

    def set_video_metadata(self, entry: VideoMetadata | Mapping[str, Any]) -> VideoMetadata:
        """Add or update the entry matched on ``(spotId, eraId)``; returns it as stored.

        ``entry`` is a :class:`VideoMetadata` or a dict in its camelCase form. Its ``status``, ``prompt``,
        ``localPath`` and ``error`` are what the entry should become; ``createdAt`` and ``completedAt`` are
        the ledger's and are ignored. Asking for the state the entry already has records nothing.

        Raises :class:`~ledger.errors.InvalidEntryError` or :class:`~ledger.errors.IllegalTransitionError`
        (nothing written), :class:`~ledger.errors.LedgerIOError` (not acknowledged).
        """
        desired = validate_entry(entry)
        return self._writer.commit_one(requests.given_key(entry, desired), requests.to(desired))

    def update_entry(
        self,
        spot_id: str,
        era_id: str,
        status: str,
        *,
        prompt: str | None = None,
        local_path: str | None = None,
        error: str | None = None,
        attempt: int | None = None,
    ) -> VideoMetadata:
        """:meth:`set_video_metadata` from its parts (what ``video-ledger set`` records): ``prompt``
        defaults to the entry's current one, read under the writer lock; a new entry needs one
        (:class:`~ledger.errors.InvalidEntryError`, nothing written). ``attempt``: the one a ready/failed
        ends."""
        fields: dict[str, object] = {
            "spotId": spot_id, "eraId": era_id, "status": status, "localPath": local_path, "error": error,
            "attempt": attempt,
        }  # fmt: skip
        if prompt is not None:
            return self.set_video_metadata({**fields, "prompt": prompt})
        checked = validate_entry({**fields, "prompt": ""})  # every other field refused before the lock
        return self._writer.commit_one((spot_id, era_id), requests.update(spot_id, era_id, checked))

    def set_many(self, entries: Iterable[VideoMetadata | Mapping[str, Any]]) -> list[VideoMetadata]:
        """:meth:`set_video_metadata` for many entries at once: one lock, one write, one fsync, one
        projection for all of them (bulk queueing, imports). Each change is checked against the state the
        ones before it leave; if any is refused, nothing is written. Returns the entries as stored."""
        given = list(entries)
        desired = [validate_entry(e) for e in given]
        batch = [(requests.given_key(e, d), requests.to(d)) for e, d in zip(given, desired, strict=True)]
        return [o.entry for o in self._writer.commit(batch) if o.entry is not None]

    def mark_video_failed(
        self, spot_id: str, era_id: str, error: str, *, attempt: int | None = None, usage: Usage | None = None
    ) -> VideoMetadata:
        """Record that the running attempt for ``(spot_id, era_id)`` failed with ``error`` (and ``usage``).

        ``attempt`` names the attempt that failed (``job.attempt``); if it is not the entry's current one,
        :class:`~ledger.errors.IllegalTransitionError` and nothing is written. ``None``: the current one.
        """
        plan = requests.end_attempt(spot_id, era_id, attempt, error=error, records=event_records(usage=usage))
        return self._writer.commit_one(requests.given_ids(spot_id, era_id), plan)

    def mark_video_ready(
        self, spot_id: str, era_id: str, local_path: str, *, size: int | None = None,
        sha256: str | None = None, attempt: int | None = None, **records: Unpack[pipeline.EndRecords],
    ) -> VideoMetadata:  # fmt: skip
        """Record that the running attempt for ``(spot_id, era_id)`` produced ``local_path``, optionally with
        the file's ``size`` and ``sha256`` (kept in the log for ``verify --files``), ``provenance`` fields
        known only now and ``usage`` (:class:`pipeline.EndRecords`).

        ``attempt`` names the attempt that produced it (``job.attempt``); if it is not the entry's current
        one, :class:`~ledger.errors.IllegalTransitionError` and nothing is written. ``None``: the current
        one."""
        key, checked = requests.given_ids(spot_id, era_id), event_records(**records)
        plan = requests.end_attempt(
            spot_id, era_id, attempt, local_path=local_path, size=size, sha256=sha256, records=checked
        )
        return self._writer.commit_one(key, plan)

    # -- the pipeline's side ---------------------------------------------------------------------------

    def generation(
        self, spot_id: str, era_id: str, prompt: str, *, local_path: str | None = None,
        takeover: int | None = None, **options: Unpack[pipeline.AttemptOptions],
    ) -> contextlib.AbstractContextManager[pipeline.Job]:  # fmt: skip
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
        which also explains ``takeover``). ``options``: :class:`pipeline.AttemptOptions` (``regenerate``).
        """
        return pipeline.generation(
            self, spot_id, era_id, prompt, local_path=local_path, takeover=takeover, **options
        )

    def begin_attempt(
        self, spot_id: str, era_id: str, prompt: str, *, local_path: str | None = None,
        takeover: int | None = None, regenerate: bool = False, **records: Unpack[pipeline.StartRecords],
    ) -> VideoMetadata:  # fmt: skip
        """Start a new generation attempt (what :meth:`generation` records first) and return the entry:
        ``entry.attempt`` is the attempt's number (from 1 per entry), which ``mark_video_ready`` /
        ``mark_video_failed`` name to end it. A ready entry: :class:`~ledger.errors.AlreadyReadyError`
        unless ``regenerate``.

        Unlike ``set_video_metadata(status="generating")``, which records nothing for an entry that is
        already generating, this never joins a live attempt: it raises
        :class:`~ledger.errors.AttemptInProgressError` (nothing written). ``takeover=N`` takes over live
        attempt ``N`` that its worker abandoned: ``failed`` ("taken over") for attempt ``N`` and
        ``generating`` for the new one, in one commit; the old worker's ``ready`` or ``failed`` is then
        refused. If another attempt than ``N`` is live, :class:`~ledger.errors.AttemptInProgressError`.
        """
        key = requests.given_ids(spot_id, era_id)
        fields = {"spotId": spot_id, "eraId": era_id, "prompt": prompt, "localPath": local_path}
        desired = validate_entry({**fields, "status": "generating"})
        batch = [(key, requests.start_attempt(desired, event_records(**records), regenerate=regenerate))]
        if takeover is not None:
            batch.insert(0, (key, requests.end_if_abandoned(takeover)))
        after = self._writer.commit(batch)[-1].entry
        assert after is not None
        return after

    def generate_and_store_video(
        self, spot_id: str, era_id: str, prompt: str, generate: Callable[[], pipeline.Generated], *,
        local_path: str | Callable[[Path], str] | None = None, **options: Unpack[pipeline.StoreOptions],
    ) -> VideoMetadata:  # fmt: skip
        """The task card's ``generateAndStoreVideo`` in one call: ``generate()`` writes the video and
        returns its path; the attempt is recorded as :meth:`generation` describes. ``local_path`` is the
        ``localPath`` the app gets (relative, under the ledger directory; default: the file's path relative
        to the ledger directory, which it must then be in), as :meth:`pipeline.Job.ready` takes it."""
        return pipeline.generate_and_store_video(
            self, spot_id, era_id, prompt, generate, local_path=local_path, **options
        )

    def import_entries(
        self, source: str | os.PathLike[str] | bytes | ImportFile, *, progress: Progress | None = None
    ) -> ImportReport:
        """Turn an existing ``generated-videos.json`` (a path, its bytes, or what :func:`read_import` made
        of it) into ``imported`` events that keep each entry's timestamps. Entries already in the ledger are
        left as they are, so importing the same file twice changes nothing the second time. An invalid
        entry raises :class:`~ledger.errors.InvalidEntryError` naming its index in the array, and nothing is
        imported. To leave a directory without a ledger as it was when the file is refused, call
        :func:`read_import` before opening the ledger (what ``video-ledger import`` does). ``progress``
        (:data:`~ledger.backend.Progress`) is told the entries planned, of all."""
        checked = source if isinstance(source, ImportFile) else read_import(source, ops=self._projector.ops)
        batch = requests.reporting([(e.key, requests.adopt(e)) for e in checked.entries], progress)
        outcomes = self._writer.commit(batch, importing=True)
        imported = sum(o.recorded for o in outcomes)
        return ImportReport(
            imported=imported, already_present=len(checked.entries) - imported, dropped=checked.dropped
        )

    def verify_files(
        self, *, root: str | os.PathLike[str] | None = None, media: str | os.PathLike[str] | None = None,
        c2pa: bool = False, trust_anchors: str | os.PathLike[str] | None = None,
        prefixes: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> FilesReport:  # fmt: skip
        """Check that every ready entry's file exists and still has the size and SHA-256 recorded when it
        became ready; with ``media``, also list the video files under that folder that no entry refers to;
        with ``c2pa``, also each file's C2PA manifest (:func:`ledger.media.verify_files`). A relative
        ``localPath`` starts at ``root`` (the media root; default: the ledger directory), one starting with a
        key of ``prefixes`` (a URL path like ``/videos/``) in the directory mapped to it; one that maps to
        neither is unchecked; nothing outside those, nor anything but a regular file, is read."""
        where = MediaMap.of(root if root is not None else self.directory, prefixes)
        events, ops = self._store.events(), self._projector.ops
        return verify_files(events, ops=ops, root=where, media=media, c2pa=c2pa, trust_anchors=trust_anchors)

    # -- history, rebuild, verify --------------------------------------------------------------------

    def history(
        self, spot_id: str | None = None, era_id: str | None = None, **filters: Unpack[HistoryOptions]
    ) -> Iterator[EventType]:
        """Every event in log order, optionally only one spot's, one era's or one entry's, and only those
        that pass ``filters``: after event ``since_seq``; between the times ``since`` and ``until`` (both
        included); that leave an entry with ``status``; of event ``type`` (``pending`` ... ``imported``).
        ``last=N``: only the last N of those; ``reverse=True``: newest first (both read from the end)."""
        return map(operator.itemgetter(1), self.history_lines(spot_id, era_id, **filters))

    def history_lines(
        self, spot_id: str | None = None, era_id: str | None = None, **filters: Unpack[HistoryOptions]
    ) -> Iterator[tuple[bytes, EventType]]:
        """Like :meth:`history`, with each event's line exactly as stored (newline excluded)."""
        self._writer.refuse_app_file()
        if (filters.get("last") or 0) < 0:
            raise InvalidEntryError(f"last must be 0 or more, not {filters.get('last')}")
        return history_view.history(self._store, spot_id, era_id, **filters)

    # -- other views of the same events ----------------------------------------------------------------

    def entries_as_of(
        self, *, seq: int | None = None, time: str | dt.datetime | None = None
    ) -> list[VideoMetadata]:
        """The entries as they stood after event ``seq`` and/or at ``time`` (events at exactly that seq or
        time included): time travel through the log."""
        if seq is None and time is None:
            raise InvalidEntryError("give seq, time, or both")
        self._writer.refuse_app_file()
        entries = entries_view.as_of(
            self._store.events(), seq=seq, ts=None if time is None else parse_time(time)
        )
        return [entries[key] for key in sorted(entries)]

    def timeline(self, spot_id: str, era_id: str) -> timeline_view.Timeline:
        """One entry's story: when it was queued, each attempt and how it ended, time to ready."""
        self._writer.refuse_app_file()
        story = timeline_view.timeline(self._store.events(), *requests.key(spot_id, era_id))
        if story.first is None:
            raise requests.no_entry(spot_id, era_id)
        return story

    def stats(self, *, progress: Progress | None = None) -> stats_view.Stats:
        """Entries per status and era, attempts, success rate, generation times, frequent failures: one
        pass over the log in bounded memory (``progress`` told the records read as it goes)."""
        self._writer.refuse_app_file()
        runs = reported((batch.events for batch in self._store.read()), progress)
        return stats_view.stats(itertools.chain.from_iterable(runs))

    def wait_for(
        self, seq: int, *, timeout: float | None = None, stop_event: watch_room.StopEvent | None = None
    ) -> bool:
        """Return ``True`` once the snapshot includes event ``seq`` (written by a ``video-ledger watch``
        process or any inline writer); ``False`` after ``timeout`` seconds or once ``stop_event`` is set."""
        return watch_room.wait_for_seq(
            self.directory, seq, snapshot=self.snapshot_path, timeout=timeout, stop_event=stop_event
        )

    def follow(
        self,
        spot_id: str | None = None,
        era_id: str | None = None,
        *,
        stop_event: watch_room.StopEvent | None = None,
        on_caught_up: Callable[[int], None] | None = None,
        **filters: Unpack[HistoryFilters],
    ) -> Iterator[tuple[bytes, EventType]]:
        """Each event with its stored line as it is appended, like ``tail -f``, until ``stop_event`` is set:
        after the events already in the log, or after event ``since_seq``; only those that pass the filters
        :meth:`history` takes (the same filter). ``on_caught_up(seq)`` is called once the existing events
        are behind."""
        wanted = history_view.event_filter(spot_id, era_id, **filters)
        store = None if self._file_store else self._store
        items = watch_room.follow(
            self.directory, since_seq=wanted.since_seq, stop_event=stop_event, on_caught_up=on_caught_up,
            store=store,
        )  # fmt: skip
        return history_view.filtered(items, wanted, ends=False)

    def rebuild(self, *, progress: Progress | None = None) -> RebuildReport:
        """Replay the whole log into a fresh snapshot (same bytes as the one kept current), checking each
        event's time order and lifecycle change as :meth:`verify` does: :class:`CorruptLogError` names
        the first line that breaks them, and the snapshot is left as it is. ``progress``: as :meth:`stats`."""
        self._writer.check_writable()
        with self._mutex:
            lawful = audit.lawful(self._projector.where)
            head = self._projector.rebuild(lambda runs: lawful(reported(runs, progress)))
            return RebuildReport(events=head.seq, entries=len(self._model.entries))

    def verify(self, *, expect_head: str | None = None, progress: Progress | None = None) -> VerifyReport:
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
        recomputed passes every other check, but not this one. ``progress``: as :meth:`stats`."""
        return audit.verify(self._projector, expect_head=expect_head, progress=progress)

    def proofs(self) -> Proofs:
        """Signed checkpoints, consistency and inclusion proofs over this ledger's Merkle tree
        (:mod:`ledger.proofs`)."""
        from ledger.proofs import Proofs

        return Proofs(self._projector)

    # -- lifecycle of the handle ---------------------------------------------------------------------

    def head(self) -> Head:
        """Where the log ends as this handle reads it: the last durable event's ``seq``, hash and time."""
        with self._mutex:
            self._writer.catch_up()
            self._projector.refresh()
            return self._model.head

    def close(self) -> None:
        """Release the files this handle holds open. Further writes raise :class:`LedgerClosedError`."""
        with self._mutex:
            try:
                self._writer.catch_up()  # unless a commit failed (a refused change leaves every file)
            finally:
                self._store.close()
                self._projector.lock.close()
                self._writer.unusable = self._writer.unusable or "it was closed"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.directory)!r}, snapshot={str(self.snapshot_path)!r})"


def _fresh_reader(ledger: Ledger) -> bool:
    """A read-only handle on a host with no snapshot yet, before its first fold: one entry is read from
    that entry's records alone (a store with an index by entry reads no other row)."""
    return (
        ledger.readonly
        and not ledger._model.loaded
        and not ledger.checkpoint_path.exists()
        and not ledger.snapshot_path.exists()
    )


def _one_entry(events: Iterator[EventType]) -> VideoMetadata | None:
    entries = entries_view.fold(events)
    return next(iter(entries.values()), None)


def watch(
    directory: str | os.PathLike[str] | None = None,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    stop_event: watch_room.StopEvent | None = None,
    step: int = 20,
    debounce: int = 100,
    on_project: Callable[[int], None] | None = None,
    store: EventStore | str | os.PathLike[str] | None = None,
) -> int:
    """Keep the snapshot of the ledger in ``directory`` current until ``stop_event`` is set (the live
    projector, for writers that defer projection); returns the number of snapshots written. ``store`` as
    :class:`Ledger` takes it (a URL: every app host runs one watcher on its own directory over the shared
    store). See :func:`ledger.watch.watch`."""
    directory, given, opened = open_chosen(directory, store, readonly=True)
    try:
        return watch_room.watch(
            directory, snapshot=snapshot, stop_event=stop_event, step=step, debounce=debounce,
            on_project=on_project, store=given,
        )  # fmt: skip
    finally:
        if opened and given is not None:
            given.close()
