"""The file store: ``events.jsonl`` behind the event-store interface (:mod:`ledger.backend`).

:class:`EventLog` implements the verbs (``head``, ``read``, ``at``, ``append``, ``wait``, ``check``,
``close``, ``newest_first``) and wires the rooms that do the work, each readable on its own:

- :mod:`ledger.logfile`: the file itself, its descriptors, one write of whole lines;
- :mod:`ledger.syncstate`: the fsynced-size record, how far the log is known to be durable;
- :mod:`ledger.scan`: reading whole, checked lines after a place, and judging what the log ends with;
- :mod:`ledger.recovery`: creating the log, finding where its whole lines end, setting a torn tail aside;
- :mod:`ledger.groupcommit`: the locks, the staging file, and one write and fsync for a group of writers.

:meth:`EventLog.newest_first` reads the other way, from the durable end back, for the newest events.

Readers take the sync lock shared and read up to the fsynced size on record, so they never take in a line
whose fsync is not done (not even one a leader that died before its fsync left). A place in the log is a
:class:`~ledger.backend.Head`; its bookmark ``at`` is the byte offset after the line, checked before it is
trusted. A handle's first append makes the log ready for writing (:meth:`EventLog.recover`).
"""

from __future__ import annotations

import contextlib
import operator
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ledger.backend import GENESIS, Audit, Batch, Decide, EventStore, Head, Record, counted_down
from ledger.errors import ConflictError, CorruptLogError, LedgerIOError, StaleHeadError
from ledger.events import EventType, line_hash
from ledger.fileops import FileOps
from ledger.groupcommit import GroupCommit, Ticket
from ledger.logfile import Identity, LogFile
from ledger.recovery import create, set_aside, whole_end
from ledger.scan import Scan
from ledger.syncstate import SyncRecord

__all__ = ("EventLog",)

_seq_of = operator.attrgetter("seq")


class _FileAudit(Audit):
    """:meth:`EventLog.check`: the whole log, every line's chain checked."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._scan = log.scan(chain=True)

    def __iter__(self) -> Iterator[Batch]:
        scan = self._scan
        offset = 0
        identity = self._log.file.stat()[0]
        runs = scan.runs()
        try:
            for lines, events in runs:
                offset += sum(map(len, lines)) + len(lines)
                yield Batch(lines, events, Head(events[-1].seq, line_hash(lines[-1]), events[-1].ts, offset))
        finally:
            runs.close()  # its file closed with this read, not whenever the collector gets to it
            self.end, self.torn = scan.end, scan.torn
        self._log.note_read(identity, scan.end)  # read to the end: the next head() reads on from there


class EventLog(EventStore):
    """``events.jsonl``, its staging file and its two lock files: the file backend of the ledger."""

    def __init__(self, path: Path, ops: FileOps, *, follow_symlinks: bool = False) -> None:
        self.path = path
        self.file = LogFile(path, ops, follow_symlinks=follow_symlinks)
        self.record = SyncRecord(self.file)
        self.commit = GroupCommit(self.file, self.record)
        self._known = GENESIS
        """The durable end :meth:`head` last found (it reads on from there)."""
        self._known_identity: Identity | None = None
        self._seen: Identity | None = None
        """The log file the heads this handle gave out are in (:meth:`read`, :meth:`at` and :meth:`append`
        raise :class:`StaleHeadError` for a head given out in another)."""
        self._recovered = False
        """:meth:`recover` ran: a handle's first append runs it first."""

    # -- the event-store interface (ledger.backend) ------------------------------------------------------

    def head(self) -> Head:
        with self.reading():
            identity, size = self.file.stat()
            known = self._known if identity == self._known_identity and self._known.at <= size else GENESIS
            end = self.scan(known, limit=self.record.durable_end(known.at, size)).skip()
        self._known, self._known_identity = end, identity
        return end

    def read(self, after: Head = GENESIS) -> Iterator[Batch]:
        identity, size = self.file.stat()
        if after.seq and ((self._seen is not None and identity != self._seen) or after.at > size):
            raise StaleHeadError(
                f"{self.path} no longer holds event {after.seq} where this handle read it (the log was "
                "replaced or cut short): read it again"
            )
        self._seen = identity
        if after.at == size and (after.at or not after.seq):  # nothing after it: one stat, no lock
            return iter(())
        start = after if after.at or not after.seq else GENESIS
        with self.reading():  # how far is fsynced; what is fsynced stays, so it is read after letting go
            scan = self.scan(start, limit=self.record.durable_end(start.at, size))
        return self._batches(scan, after)

    def _batches(self, scan: Scan, after: Head) -> Iterator[Batch]:
        skip = after.seq - scan.start.seq  # records before ``after`` (none when its bookmark was used)
        join = skip > 0  # the first record yielded must chain to ``after`` (the scan checked it otherwise)
        offset = scan.start.at
        runs = scan.runs()
        try:
            for lines, events in runs:
                offset += sum(map(len, lines)) + len(lines)
                if skip >= len(events):
                    skip -= len(events)
                    continue
                if join:
                    if events[skip].prev != after.hash:
                        raise CorruptLogError(
                            self.path, after.seq + 1, "chain broken: prev does not match the line before"
                        )
                    lines, events, skip, join = lines[skip:], events[skip:], 0, False
                yield Batch(lines, events, Head(events[-1].seq, line_hash(lines[-1]), events[-1].ts, offset))
        finally:
            runs.close()  # its file closed with this read, not whenever the collector gets to it
        if skip:
            raise StaleHeadError(f"{self.path} holds fewer than {after.seq} events: read it again")

    def at(self, head: Head) -> Head | None:
        if head.seq <= 0:
            return GENESIS
        identity, size = self.file.stat()
        if 0 < head.at <= size:  # the bookmark: the line that ends there, if it is record ``head.seq``
            found = self.file.head_at(head.at)
            if found is not None and found.seq == head.seq:
                self._seen = identity
                return found
        # no bookmark (a checkpoint another backend wrote), or a wrong one: look for the record
        offset = 0
        try:
            for lines, events in self.scan().runs():
                if events[-1].seq >= head.seq:
                    i = head.seq - events[0].seq
                    offset += sum(map(len, lines[: i + 1])) + i + 1
                    self._seen = identity
                    return Head(head.seq, line_hash(lines[i]), events[i].ts, offset)
                offset += sum(map(len, lines)) + len(lines)
        except CorruptLogError:
            return None  # not soundly held: a reader's replay names the damage
        return None

    def append(self, after: Head, decide: Decide) -> Head:
        if not self._recovered:  # the first append: as a leader, make the log ready for writing
            self.recover()
        commit = self.commit
        error: BaseException | None = None
        records: Sequence[Record] = ()
        ticket: Ticket | None = None
        commit.queue.acquire()  # taken and let go without a context manager: this is the hot path
        try:
            tip, unseen = self._catch_up(after)
            try:
                records = decide(tip, unseen)
            except BaseException as exc:  # nothing is written; what was read must still be fsynced
                error, records = exc, ()
            end = tip
            if records:
                last = records[-1]
                data = b"\n".join([r.line for r in records]) + b"\n"
                end = Head(last.seq, line_hash(last.line), last.event.ts, tip.at + len(data))
                ticket = commit.submit(data, end, last.line)
            elif unseen:  # nothing to write, but what it was shown must be durable before it returns
                ticket = commit.submit(b"", end)
        finally:
            commit.queue.release()
        if ticket is not None and not commit.settle(ticket):
            if records:
                raise LedgerIOError(
                    f"cannot append to {self.path}: the group commit that carried event {end.seq} failed "
                    "in another writer; the event was not recorded"
                )
            if error is None:
                raise ConflictError(
                    f"{self.path}: the lines staged before this commit were not recorded (another writer's "
                    "commit failed): read again"
                )
        if error is not None:
            raise error
        return end

    def _catch_up(self, after: Head) -> tuple[Head, list[Record]]:
        """Under the queue lock: the records after ``after`` that other writers appended or staged, and the
        tip they end at (what a plan continues). A torn tail found on the way is set aside."""
        file, commit = self.file, self.commit
        identity, size = file.stat()
        if identity != self._seen and self._seen is not None:
            self._seen = None
            raise StaleHeadError(f"{self.path} was replaced since this handle read it: read it again")
        self._seen = identity
        file.follow(identity)
        if size < after.at:
            raise StaleHeadError(
                f"{self.path} no longer holds event {after.seq} where this handle read it (the log was "
                "replaced or cut short): read it again"
            )
        tip = after
        unseen: list[Record] = []
        if size != after.at:  # including lines a leader that died before its fsync left
            commit.crowd = True
            # up to the size just seen: the log does not grow while the queue lock is held
            scan = Scan(file, self.record, after, chain=False, limit=size, fd=file.reader())
            for lines, events in scan.runs():
                unseen.extend(map(Record, map(_seq_of, events), lines, events))
            if scan.torn is not None:
                set_aside(file, scan.torn)
            tip = scan.end
        staged = commit.read_staged(tip)
        if staged:
            commit.crowd = True
            unseen.extend(Record(event.seq, line, event) for line, event in staged)
            line, event = staged[-1]
            tip = Head(event.seq, line_hash(line), event.ts, tip.at + len(commit.staged))
        return tip, unseen

    def wait(self, after_seq: int, timeout: float) -> bool:
        import watchfiles  # only a waiter needs it

        deadline = time.monotonic() + timeout
        if self.head().seq > after_seq:
            return True
        name = self.path.name
        for _ in watchfiles.watch(
            self.path.parent,
            watch_filter=lambda change, path: os.path.basename(path) == name,
            debounce=50,
            step=5,
            rust_timeout=max(1, min(100, int(timeout * 1000))),
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=False,
        ):
            if self.head().seq > after_seq:
                return True
            if time.monotonic() >= deadline:
                return False
        return self.head().seq > after_seq

    def check(self) -> Audit:
        return _FileAudit(self)

    def newest_first(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]:
        """From the fsynced size on record backward (:meth:`LogFile.lines_backward`), each line checked
        with its chain (:func:`~ledger.backend.counted_down`); the newest line says which seq it is. Where
        no sound line ends there (no record, a torn tail, damage), a forward pass (:meth:`head`) finds
        where the whole lines end, or names the damage, as :meth:`read` would."""
        with self.reading():
            size = self.file.size()
            durable = self.record.durable_end(0, size)
        top = self.file.head_at(size if durable is None else durable)
        if top is None:
            top = self.head()
        return counted_down(self.path, self.file.lines_backward(top.at), top.seq)

    def close(self) -> None:
        self.file.close()
        self.record.close()
        self.commit.close()

    # -- wiring ------------------------------------------------------------------------------------------

    def recover(self) -> None:
        """Make the log ready for writing, as a leader: create it if missing, set a torn tail aside, move
        what a writer that died left staged into the log, fsync it and record the fsynced size (always:
        the record may have survived a reboot or come with a copied directory). A handle's first
        :meth:`append` runs it (the store API's writable open appends nothing, to run it then)."""
        commit = self.commit
        with self.syncing():
            with self.locked():
                create(self.file)
                # from the part on record as fsynced (an unreadable record says nothing: from the start)
                fsynced = self.record.fsynced_part(self.file.size())
                commit.read_staged(whole_end(self.file, self.record, fsynced))
                start = commit.lead()
            commit.flush(start.at, start.at + len(commit.staged), force=True)
        self._recovered = True

    def note_read(self, identity: Identity | None, end: Head) -> None:
        """A whole pass over the log file ``identity`` (:meth:`check`) read whole lines to ``end``: keep the
        durable place at or before it as where :meth:`head` reads on from, so that a fresh handle's first
        head does not read the whole log again (``verify`` asks for one after its check). The place is
        taken from the file as it is now (:meth:`LogFile.head_at`), at the fsynced size on record if that
        is before ``end``; nothing is kept if the file was replaced meanwhile or the line there is not
        whole."""
        now, size = self.file.stat()
        if identity is None or now != identity or end.at > size or not end.at:
            return
        with self.reading():
            durable = self.record.durable_end(0, size)  # None: it fsynced the log, all of it is durable
            known = self.file.head_at(end.at if durable is None else min(durable, end.at))
        if known is not None and (now != self._known_identity or known.at > self._known.at):
            self._known, self._known_identity = known, now

    def scan(self, start: Head = GENESIS, *, chain: bool = False, limit: int | None = None) -> Scan:
        """The events after ``start`` (up to ``limit`` bytes of the log, if given), checked as :class:`Scan`
        describes."""
        return Scan(self.file, self.record, start, chain=chain, limit=limit)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the queue lock: writers take turns under it to read the latest state, check their change
        and hand it over. Freed if the holder dies."""
        return self.commit.queue.held()

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold the sync lock shared: no leader is between its write and its fsync, so a reader takes in
        only lines whose fsync is done."""
        return self.commit.sync.held(shared=True)

    def syncing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the sync lock exclusively (then the queue lock may be taken too; never the other way)."""
        return self.commit.sync.held()
