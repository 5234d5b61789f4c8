"""The write engine: open a store for writing, commit planned requests, keep the clock rule, seal events.

One write, top to bottom (:meth:`Writer.commit`): under the store's lock (:meth:`EventStore.append
<ledger.backend.EventStore.append>`), the records other writers appended since this handle's head are
folded (:meth:`ledger.model.Model.unseen`); each request's plan (:mod:`ledger.requests`) is run against the
entry as it then is; the commit's time is read once (:func:`commit_time`); each change is sealed into its
envelope (:func:`ledger.events.seal`). The store makes the lines durable and returns; the model advances,
and, with inline projection, the projector writes the snapshot. A plan that raises leaves every file as it
was; a commit whose view turned out not to be recorded (:class:`~ledger.errors.ConflictError`) is planned
again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, NamedTuple

from ledger import projector as projector_room
from ledger import requests
from ledger.backend import Head, Record
from ledger.errors import (
    ClockSkewError,
    ConflictError,
    DurabilityError,
    LedgerClosedError,
    LedgerError,
    LedgerIOError,
    ReadOnlyLedgerError,
    SnapshotUpdateError,
    UnimportedSnapshotError,
    io_error,
)
from ledger.events import Clock, Policy, VideoMetadata, format_ts, line_hash, seal
from ledger.fileops import FileOps
from ledger.stores import make_directory
from projections import entries as entries_view
from projections.stats import describe_span

__all__ = ("MAX_CLOCK_LEAD", "Outcome", "Writer", "commit_time", "not_recorded")

log = logging.getLogger("ledger")

POLICY_KEY: Final = ("", "")
"""The key a request to record a ``policy`` event is made under (no entry has it)."""

RETRIES: Final = 100
"""How often a commit is tried again when what it read was dropped by another writer's failed commit."""

MAX_CLOCK_LEAD: Final = dt.timedelta(days=30)
"""How far after the log's last event a writer's clock may read before its events are refused
(:class:`~ledger.errors.ClockSkewError`, unless the handle has ``force_clock=True``): one clock that is far
ahead would otherwise move every later event's time with it (``docs/lifecycle.md``, *Time*)."""

_CLAMP_WARNING: Final = dt.timedelta(seconds=1)
"""A writer's clock this far behind the log's time is logged as a warning (any amount is recorded)."""


class Outcome(NamedTuple):
    """One request's result: the entry after it (``None``: declined for an entry that does not exist), and
    whether the request recorded an event."""

    entry: VideoMetadata | None
    recorded: bool


def commit_time(moment: dt.datetime, last: Head, *, force_clock: bool = False) -> tuple[str, str | None]:
    """The time to record a commit at when the clock reads ``moment`` and the log ends at ``last``, and,
    when the clock reads earlier than ``last``'s time, the reading (kept as the events' ``clock``; the time
    is then ``last``'s: times never go backwards). Raises :class:`ClockSkewError` for a reading more than
    :data:`MAX_CLOCK_LEAD` after ``last`` unless ``force_clock``."""
    reading = format_ts(moment)
    if reading < last.ts:
        behind = dt.datetime.fromisoformat(last.ts) - moment
        if behind > _CLAMP_WARNING:
            log.warning(
                "clock skew: this clock reads %s, %s before the log's last event (event %d at %s); "
                "recorded at that time, with this clock's reading kept in the event",
                reading, describe_span(behind.total_seconds()), last.seq, last.ts,
            )  # fmt: skip
        return last.ts, reading
    if last.ts and not force_clock:
        ahead = moment - dt.datetime.fromisoformat(last.ts)
        if ahead > MAX_CLOCK_LEAD:
            raise ClockSkewError(
                f"this clock reads {reading}, {describe_span(ahead.total_seconds())} after "
                f"the log's last event (event {last.seq} at {last.ts}); a time that far ahead "
                f"would become every later event's time, so more than {MAX_CLOCK_LEAD.days} days is "
                "refused. Check this host's clock; if it is right and the ledger was idle since then, "
                "repeat with force_clock=True (--force-clock)",
                clock=reading,
                last=last.ts,
                seq=last.seq,
            )
    return reading, None


def not_recorded(exc: LedgerIOError) -> LedgerIOError:
    """``exc``, saying that nothing was recorded: for an error raised before anything was sent to the
    store. An error in doubt (:class:`~ledger.errors.DurabilityError`: an fsync failed, or a commit's
    outcome is unknown) is left as it is: it says itself what is known."""
    text = str(exc)
    said = "not recorded" in text or "nothing was recorded" in text
    if not isinstance(exc, DurabilityError) and not said:
        exc.args = (f"{text}; nothing was recorded",)
    return exc


class Writer:
    """Records requests in the store a projector reads, under one handle's rules.

    ``projector`` holds the store, the write model and the snapshot; ``clock`` and ``force_clock`` the
    clock rule (:func:`commit_time`); ``projection`` whether each commit writes the snapshot before it
    returns (``"inline"``) or leaves it to a watcher (``"deferred"``); ``readonly`` refuses every write.
    """

    def __init__(
        self,
        projector: projector_room.Projector,
        *,
        directory: Path,
        clock: Clock,
        force_clock: bool,
        projection: Literal["inline", "deferred"],
        readonly: bool,
        ops: FileOps,
    ) -> None:
        self.projector = projector
        self.model = projector.model
        self.store = projector.store
        self.directory = directory
        self.clock = clock
        self.force_clock = force_clock
        self.projection = projection
        self.readonly = readonly
        self.ops = ops
        self.mutex = threading.RLock()
        """Held by every read and write of the handle: one of its threads at a time moves the model."""
        self.unusable: str | None = None
        """Why this handle accepts no more writes (closed, or an fsync failed), if it does not."""
        self.last_seq: int | None = None
        """``seq`` of the last event this handle appended (``None`` before its first)."""
        self._behind = False
        """The snapshot may be behind the log since the open (inline): :meth:`catch_up` looks."""
        self._appended = False
        """The store took this handle's last commit, so its log exists: a commit need not ask
        :meth:`app_file_alone` (two path lookups) again until one meets a conflict, which is how a removed
        or replaced log shows (the store's ``append`` finds the file it wrote to gone)."""

    def open(self) -> None:
        """Make the directory if missing, load the state and settle what other writers left in the store
        (the file store: create the log, set a torn tail aside, move staged lines in, fsync). Inline, a new
        ledger's snapshot (the empty array) is written here; one behind the log, or damaged, is brought up
        to date by the handle's first read, commit or close (:meth:`catch_up`), but not after a commit that
        fails: a refused change leaves every file as it was. Raises
        :class:`~ledger.errors.LedgerIOError` saying nothing was recorded."""
        try:
            self.projector.refuse_symlinked_snapshot()
            make_directory(self.ops, self.directory)
            with self.mutex:
                self.projector.refresh()  # first: a checkpoint in doubt is judged before the log is touched
                if self.app_file_alone():
                    return  # the app's own file only: nothing is created until it is imported
                self._make_others_durable()
                self._behind = self.projection == "inline"
                if self.model.head.seq == 0:
                    self.catch_up()
        except LedgerIOError as exc:
            raise not_recorded(exc) from None
        except LedgerError:
            raise
        except OSError as exc:  # permission denied on a path the steps above touch, and the like
            where = Path(exc.filename) if exc.filename else self.directory
            raise not_recorded(io_error("use", where, exc)) from None

    def catch_up(self) -> None:
        """Once after the open, inline: bring the snapshot up to date, unless the app's own file is there
        (left until it is imported) or it cannot be written now (each commit's own projection says whether
        it managed). Called by the handle's reads and its close; a commit projects anyway, and one that
        fails leaves the snapshot as it is (no catch-up after it)."""
        if not self._behind or self.unusable is not None:
            return
        self._behind = False
        try:
            self.projector.project()
        except UnimportedSnapshotError as exc:  # left as it is; writes other than import refuse
            log.info("%s", exc)
        except LedgerIOError as exc:
            log.warning(
                "%s is behind the log: %s; writes are still recorded", self.projector.snapshot_path, exc
            )

    def _make_others_durable(self) -> None:
        """Append nothing: the store makes what other writers left durable before it returns, and the model
        takes in what it was shown."""
        changed: entries_view.Entries = {}

        def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            nonlocal changed
            changed = self.model.unseen(unseen)
            return []

        for _ in range(RETRIES):
            try:
                head = self.store.append(self.model.head, decide)
            except ConflictError:
                self.model.invalidate()
                self.projector.refresh()
                continue
            self.model.advance(changed, head)
            return
        raise LedgerIOError("cannot open: other writers' commits kept failing")

    def holds_ledger(self) -> bool:
        """Whether there is a ledger to open: another store's, the file store's log (a symbolic link counts:
        whether one may be followed is checked where it is opened), or the app's own file to import. A path
        that cannot be looked at counts for a writer: its :meth:`open` says what is wrong, and that nothing
        was recorded."""
        try:
            return not self._log_missing() or self.app_file_alone()
        except (OSError, LedgerIOError):
            if self.readonly:
                raise
            return True

    def _log_missing(self) -> bool:
        """Whether this is the file store and its log is not there (a symbolic link counts as there)."""
        log = self.projector.where  # the file store's events.jsonl, or another store's name
        return log.parent == self.directory and not (log.exists() or log.is_symlink())

    def app_file_alone(self) -> bool:
        """Whether the directory holds the app's own snapshot (entries the log does not hold) and no log
        yet (the file store's): then nothing is created there until it is imported."""
        if not self._log_missing():
            return False
        if not self.projector.snapshot_path.exists():
            return False
        self.projector.refresh()
        return self.projector.unimported() > 0

    def refuse_unimported(self) -> None:
        """Before a read of the entries: brought up to date, and refused (the writers' one error) while the
        snapshot holds entries the log does not, which a read would call "no entries"."""
        self.projector.refresh()
        if count := self.projector.unimported():
            raise self.projector.unimported_error(count, "nothing was read")

    def refuse_app_file(self) -> None:
        """:meth:`refuse_unimported` for the reads of the log itself, where there is no log yet beside the
        app's own file (they would say "0 events")."""
        if self.app_file_alone():
            with self.mutex:
                self.refuse_unimported()

    def check_writable(self) -> None:
        """Raise if this handle accepts no writes: opened read-only, closed, or poisoned."""
        if self.readonly:
            raise ReadOnlyLedgerError(f"{self.directory} was opened read-only")
        if self.unusable is not None:
            raise LedgerClosedError(f"this ledger handle accepts no more writes: {self.unusable}")

    def commit(self, batch: Sequence[requests.Request], *, importing: bool = False) -> list[Outcome]:
        """Plan every request against the latest state under the store's lock and append all their events
        at once (one group-commit submission in the file store), durable on return, then project once
        (inline). If any plan raises, nothing is written. Unless ``importing``, refuses
        (:class:`~ledger.errors.UnimportedSnapshotError`) while the snapshot holds entries the log does
        not."""
        self.check_writable()
        with self.mutex:
            self._behind = False  # caught up by this commit's projection, or left as it is if it fails
            for _ in range(RETRIES):
                try:
                    outcomes = self._try(batch, importing)
                except LedgerIOError as exc:
                    raise not_recorded(exc) from None
                if outcomes is not None:
                    break
            else:
                raise not_recorded(LedgerIOError("cannot record: other writers' commits kept failing"))
            if self.projection == "inline":
                self._project(any(o.recorded for o in outcomes))
            return outcomes

    def commit_one(self, key: tuple[str, str], plan: requests.Plan) -> VideoMetadata:
        """:meth:`commit` of one request whose plan records or refuses (never declines a new entry)."""
        after = self.commit([(key, plan)])[0].entry
        assert after is not None
        return after

    def _project(self, recorded: bool) -> None:
        """Bring the snapshot up to date after a commit; say what was recorded if that fails."""
        try:
            self.projector.project()
        except LedgerIOError as exc:
            if not recorded or self.last_seq is None:
                raise
            raise SnapshotUpdateError(
                f"event {self.last_seq} was recorded, but {exc}; retrying the call (it records nothing "
                "more) or `video-ledger rebuild` brings the snapshot up to date",
                seq=self.last_seq,
            ) from None

    def _try(self, batch: Sequence[requests.Request], importing: bool) -> list[Outcome] | None:
        """One try of :meth:`commit` up to the fsync: the outcomes, or ``None`` when what the plans were
        shown turned out not to be recorded (another writer's commit failed): then try again.

        The plans run under the store's lock against this handle's entries and the records after its head
        that it had not read yet; the entries and head move on only once the store says every one of those
        records is durable."""
        self.projector.ready()
        if not importing and not self._appended and self.app_file_alone():  # before the log is created
            raise self.projector.unimported_error(self.projector.unimported(), "nothing was recorded")
        changed: entries_view.Entries = {}  # the entries the unseen records and this commit change
        outcomes: list[Outcome] = []

        def decide(tip: Head, unseen: Sequence[Record]) -> list[Record]:
            nonlocal changed
            changed = self.model.unseen(unseen)
            if not importing and (count := self.projector.unimported(changed)):
                raise self.projector.unimported_error(count, "nothing was recorded")
            outcomes.clear()
            return self._plan(batch, tip, changed, outcomes)

        self._appended = False  # until the store has taken this commit
        try:
            head = self.store.append(self.model.head, decide)
        except ConflictError:
            self.model.invalidate()
            return None
        except DurabilityError as exc:
            self.unusable = str(exc)
            raise
        self._appended = True
        self.model.advance(changed, head)
        if any(o.recorded for o in outcomes):
            self.last_seq = head.seq
        return outcomes

    def _plan(
        self,
        batch: Sequence[requests.Request],
        tip: Head,
        changed: entries_view.Entries,
        outcomes: list[Outcome],
    ) -> list[Record]:
        """The records of ``batch`` after ``tip``, each plan shown its entry as the ones before it leave it
        (``changed`` and ``outcomes`` are filled as it goes). One commit, one instant: the clock is read at
        its first change (none: no reading)."""
        entries = self.model.entries
        records: list[Record] = []
        seq, prev = tip.seq, tip.hash
        ts, clock = "", None
        for given, plan in batch:
            key = (
                given
                if given == POLICY_KEY
                else requests.stored_key(requests.key(*given), given, changed, entries)
            )
            current = changed.get(key) or entries.get(key)
            change = plan(current)
            if change is None:
                outcomes.append(Outcome(current, False))
                continue
            if not ts:
                ts, clock = commit_time(self.clock(), tip, force_clock=self.force_clock)
            seq += 1
            event, line = seal(change.cls, change.fields, seq=seq, ts=ts, key=key, prev=prev, clock=clock)
            records.append(Record(seq, line, event))
            prev = line_hash(line)
            if isinstance(event, Policy):  # no entry's event
                outcomes.append(Outcome(None, True))
                continue
            changed[key] = entries_view.apply(current, event)
            outcomes.append(Outcome(changed[key], True))
        return records
