"""Group commit across processes: one write and one fsync of ``events.jsonl`` for every writer that arrived
while the previous fsync was in flight.

Two ``flock`` locks:

- the *queue lock* (``events.jsonl.lock``) orders writers: under it a writer reads what others appended
  (to the log and to the staging file ``events.jsonl.staged``), checks its change against that, and either
  writes its lines to the log itself (when no fsync is in flight and no other writer is about) or appends
  them to the staging file (:meth:`GroupCommit.submit`);
- the *sync lock* (``events.jsonl.sync.lock``) is held by the one writer that writes to the log and fsyncs it
  (the leader). A writer that staged waits for it (:meth:`GroupCommit.settle`); then either a leader's
  fsync already covered its lines (it returns at once) or it becomes the leader, moves everything staged
  into the log with one write (:meth:`GroupCommit.lead`), and fsyncs once for all of them
  (:meth:`GroupCommit.flush`), recording how far the log is known to be fsynced (:mod:`ledger.syncstate`).

So the log only ever grows by one leader's single write followed by its fsync: at most one unsynced write
is in flight, as with one writer. The staging file is scratch: it is validated line by line (crc, ``seq``,
chain) before anything in it is moved, and whatever does not continue the log is dropped (its writer was
never told it was recorded).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Final, NamedTuple

import msgspec

from ledger.backend import GENESIS, Head
from ledger.errors import DurabilityError, LedgerIOError, io_error
from ledger.events import (
    FORMAT_VERSION,
    GENESIS_HASH,
    MAX_LINE_BYTES,
    EventType,
    check_line,
    decode_event,
    line_hash,
)
from ledger.fileops import FileLock, OwnedFd
from ledger.logfile import CHUNK, LogFile, cut_back
from ledger.recovery import whole_end
from ledger.syncstate import SyncRecord

__all__ = ("GroupCommit", "Ticket")

log = logging.getLogger("ledger")

_GATHER_MAX: Final = 0.005
"""The longest a writer pauses for other writers to stage (s)."""
_GATHER_FROM: Final = 0.001
"""Writers pause for each other only where an fsync takes at least this long (s): below it the pause and
the extra staging cost about what the shared fsync saves (docs/performance.md)."""


class Ticket(NamedTuple):
    """A writer's place in a group commit (:meth:`GroupCommit.submit`): what must be durable before it may
    return."""

    end: Head
    """The end of its last line (or of what it read, when it wrote nothing)."""
    leader: bool
    """It holds the sync lock and wrote to the log itself: it fsyncs."""
    start: int = 0
    """Where the leader's write began: what the log is cut back to if its fsync fails."""
    line: bytes = b""
    """Its last line (newline excluded), ``b""`` when it wrote nothing: what the log must hold just before
    ``end``."""
    gather: bool = False
    """It staged though no fsync may have been in flight, other writers being about: it waits a moment
    for them to stage too before it waits for the sync lock (:meth:`GroupCommit.settle`)."""


class GroupCommit:
    """The write path of the log ``file``: its two locks, its staging file, and one handle's part in the
    commits it shares with other writers."""

    def __init__(self, file: LogFile, record: SyncRecord) -> None:
        self.file = file
        self.record = record
        self.queue = FileLock(file.ops, file.path.with_name(file.path.name + ".lock"))
        self.sync = FileLock(file.ops, record.path)
        self.staged_path = file.path.with_name(file.path.name + ".staged")
        self._staged_fd = OwnedFd(self)
        self.crowd = False
        """Other writers are about: this handle's last commit shared an fsync with another writer's, or
        another writer wrote since. Then a commit stages its lines even when no fsync is in flight
        (:meth:`submit`)."""
        self._fsync_time = 0.0
        """How long this handle's last fsync of the log took (s)."""
        self._batch = 0
        """How many lines this handle's last move of staged lines carried."""
        self.log_end = GENESIS
        """Where the log file ends, as the last :meth:`read_staged` found it (under the queue lock)."""
        self.staged = b""
        """The staged lines that continue the log, as the last :meth:`read_staged` found them."""
        self._staged_size = 0

    def read_staged(self, after: Head) -> list[tuple[bytes, EventType]]:
        """Under the queue lock, with ``after`` the end of the log: the staged events that continue it.

        Staged lines the log already holds (a leader died between moving them and emptying the file) are
        skipped; from the first line that is damaged or does not continue the chain (a writer died while
        staging, or a power loss left garbage) the file is cut back. No writer was told those were recorded.
        """
        self.log_end = after
        fd = self._staging_fd()
        ops = self.file.ops
        try:
            chunk = ops.pread(fd, CHUNK, 0)
            if not chunk:  # the common case: nothing staged
                self._staged_size, self.staged = 0, b""
                return []
            staged, size = _Staged(after), 0
            # nobody appends while the queue lock is held: a short read is the end; and nothing after a
            # line that does not continue the log is read (it is cut off)
            while staged.take(chunk) and len(chunk) == CHUNK:
                size += len(chunk)
                chunk = ops.pread(fd, CHUNK, size)
            total = ops.fstat(fd).st_size
        except OSError as exc:
            raise io_error("read", self.staged_path, exc) from None
        if staged.end != total:
            log.warning(
                "%s: dropped %d staged bytes that do not continue the log (a writer died while staging)",
                self.staged_path,
                total - staged.end,
            )
            cut_back(ops, fd, staged.end, self.staged_path)
        self._staged_size = staged.end
        self.staged = b"".join(staged.lines)
        return staged.records

    def submit(self, data: bytes, end: Head, line: bytes = b"") -> Ticket:
        """Under the queue lock, after :meth:`read_staged`: hand over ``data`` (whole lines continuing what
        is staged, the last one ``line``), which ends at ``end``; then let the queue lock go and call
        :meth:`settle`.

        If no fsync is in flight, this writer leads: what is staged and ``data`` go to the log in one write
        (fsynced by :meth:`settle`). Otherwise ``data`` is staged for the next leader. On a failed write
        nothing of ``data`` is anywhere and :class:`LedgerIOError` is raised.

        Where other writers are about (:attr:`crowd`), ``data`` is staged even when no fsync is in flight:
        writers come back together once an fsync they shared returns, and the first one back would
        otherwise take the sync lock at once, fsync alone, and keep the others (woken, not yet running)
        from even seeing that their own fsync is done. Staged, it leads from :meth:`settle` once those have
        looked, and gathers whoever stages meanwhile.
        """
        if data and self.crowd and self._fsync_time >= _GATHER_FROM:
            self._stage(data)
            return Ticket(end, leader=False, line=line, gather=True)
        if self.sync.acquire(wait=False):
            start = self.log_end.at
            try:
                block = self.staged + data if self.staged else data
                if block:
                    self.file.write(block, start)
                    if self._staged_size or self.staged:
                        self._empty_staging()
            except BaseException:
                self.sync.release()
                raise
            return Ticket(end, leader=True, start=start, line=line)
        if data:
            self._stage(data)
        return Ticket(end, leader=False, line=line)

    def settle(self, ticket: Ticket) -> bool:
        """Return once the log holds ``ticket.end`` fsynced: ``True``; or ``False`` if it never will (a
        leader's write or fsync failed and the lines after the fsynced part were dropped).

        A leader fsyncs. Any other writer waits for the sync lock (one that staged with no fsync perhaps in
        flight, :attr:`Ticket.gather`, first pauses for the others: :meth:`_pause`); if the last leader's
        fsync did not cover its lines, it leads (:meth:`_lead_for`). Raises :class:`DurabilityError` if
        this writer's own fsync failed (the caller must stop writing) and :class:`LedgerIOError` if its move
        failed.
        """
        if ticket.leader:
            self.crowd = False  # it led alone: nothing staged, nothing of others read
            try:
                self.flush(ticket.start, ticket.end.at)
            finally:
                self.sync.release()
            return True
        if ticket.gather:
            self._pause()
        with self.sync.held(shared=True):  # every waiter checks at once when the leader lets go
            if self.record.flushed() >= ticket.end.at:
                self.crowd = self._holds(ticket)  # another writer's fsync carried it
                return self.crowd
        with self.sync.held():
            flushed = self.record.flushed()
            if flushed >= ticket.end.at:  # another writer's fsync carried it
                self.crowd = self._holds(ticket)
                return self.crowd
            return self._lead_for(ticket, flushed)

    def _lead_for(self, ticket: Ticket, flushed: int) -> bool:
        """Under the sync lock, the log fsynced up to ``flushed`` only: lead, and say whether the log now
        holds ``ticket`` fsynced."""
        with self.queue.held():
            self.read_staged(whole_end(self.file, self.record, flushed))
            start = self.lead()
        self.flush(start.at, start.at + len(self.staged))
        # It wrote and fsynced what is staged, from ``start``: where its line ends inside that, the bytes
        # are known; elsewhere (a leader that died after its write moved it, or it wrote nothing) the log
        # is read.
        at = ticket.end.at - start.at
        want = ticket.line + b"\n"
        if ticket.line and 0 < at <= len(self.staged):
            held = self.staged.endswith(want, 0, at) and (
                at == len(want) or self.staged[at - len(want) - 1] == 10  # a whole line
            )
        else:
            held = self._holds(ticket)
        self.crowd = held and len(self.staged) > len(want)  # its fsync carried others' lines
        return held

    def lead(self) -> Head:
        """Under the sync lock and then the queue lock, after :meth:`read_staged`: move what is staged into
        the log with one write. Returns where the moved lines begin; :meth:`flush` next, with the queue lock
        let go. If the write fails, the staging file is emptied too: every writer whose lines were there
        learns that they were not recorded."""
        start = self.log_end
        if self.staged:
            try:
                self.file.write(self.staged, start.at)
                self._batch = self.staged.count(b"\n")
            finally:
                self._empty_staging(keep=True)
        return start

    def flush(self, start: int, size: int, *, force: bool = False) -> None:
        """Under the sync lock only (the queue lock let go): fsync the log unless it is known to be (or
        ``force``), and record that it is fsynced up to ``size`` (its size now). If the fsync fails, the log
        is cut back to ``start`` (where this leader's write began), the staging file is emptied, and
        :class:`DurabilityError` is raised."""
        if not force and size == start and self.record.flushed() == size:
            return
        fd = self.file.appender()
        began = time.monotonic()
        try:
            self.file.ops.fsync(fd)
        except OSError as exc:
            with self.queue.held():  # what was written since the last good fsync is in doubt: drop it
                cut_back(self.file.ops, fd, start, self.file.path)
                self._empty_staging()
            err = DurabilityError(
                f"cannot append to {self.file.path}: fsync failed ({exc.strerror or exc}); "
                "the event was not recorded and this ledger handle accepts no more writes"
            )
            err.errno = exc.errno
            raise err from None
        self._fsync_time = time.monotonic() - began  # what pauses are decided and scaled by
        self.file.ops.point("log.after_fsync")
        self.record.set(size, keep_same=force)

    def _stage(self, data: bytes) -> None:
        """Append ``data`` to the staging file, under the queue lock; on a failed or short write it is cut
        back and :class:`LedgerIOError` is raised."""
        fd = self._staging_fd()
        ops = self.file.ops
        try:
            written = ops.write(fd, data)
        except OSError as exc:
            cut_back(ops, fd, self._staged_size, self.staged_path)
            raise io_error("append to", self.staged_path, exc) from None
        if written != len(data):
            cut_back(ops, fd, self._staged_size, self.staged_path)
            raise LedgerIOError(
                f"cannot append to {self.staged_path}: short write ({written} of {len(data)} bytes)"
            )
        self._staged_size += written
        ops.point("staged.after_write")

    def _pause(self) -> None:
        """Wait, holding no lock, for the writers that shared the last fsync to stage again: until as many
        lines are staged as this handle's last lead moved, or at most a quarter of an fsync (on a disk
        whose flush takes milliseconds, long enough for them; on a fast one, next to nothing). The first
        to wake then leads for all of them."""
        limit = min(self._fsync_time / 4, _GATHER_MAX)
        deadline = time.monotonic() + limit
        fd = self._staging_fd()
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, limit / 4))
            if self._batch > 1:
                try:
                    if self.file.ops.pread(fd, CHUNK, 0).count(b"\n") >= self._batch:
                        return
                except OSError:
                    return  # the leader reads it again, under the lock, and reports

    def _holds(self, ticket: Ticket) -> bool:
        """Whether the log's line that ends at ``ticket.end`` is the ticket's (its chain hash, when the
        ticket wrote nothing): one read through the writer's descriptor of the log."""
        end = ticket.end.at
        if not ticket.line:
            if end == 0:
                return ticket.end.hash == GENESIS_HASH
            line = self.file.line_before(end, self.file.reader())
            return bool(line) and line_hash(line) == ticket.end.hash
        want = b"\n" + ticket.line + b"\n"
        at = end - len(want)
        if at == -1:  # the log's first line
            want, at = want[1:], 0
        if at < 0:
            return False
        try:
            return self.file.ops.pread(self.file.reader(), len(want), at) == want
        except OSError as exc:
            raise io_error("read", self.file.path, exc) from None

    def _empty_staging(self, *, keep: bool = False) -> None:
        """Empty the staging file (``keep``: still remember what was in it, for the caller)."""
        if self._staged_size:
            cut_back(self.file.ops, self._staging_fd(), 0, self.staged_path)
            self._staged_size = 0
        if not keep:
            self.staged = b""

    def _staging_fd(self) -> int:
        fd = self._staged_fd.get()
        if fd is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | self.file.nofollow
            try:
                fd = self._staged_fd.fd = self.file.ops.open_regular(self.staged_path, flags, 0o666)
            except OSError as exc:
                raise io_error("open", self.staged_path, exc) from None
        return fd

    def close(self) -> None:
        self._staged_fd.close()
        self.queue.close()
        self.sync.close()


class _Staged:
    """The staging file read chunk by chunk against the log's end ``after``: the events that continue it,
    up to the first line that is damaged or does not continue the chain. Lines the log already holds are
    skipped; no line is held past the longest a line may be."""

    def __init__(self, after: Head) -> None:
        self.records: list[tuple[bytes, EventType]] = []
        self.lines: list[bytes] = []
        """The records' lines, each with its newline: what is moved into the log."""
        self.end = 0
        """Where the last line that continues the log (or that the log holds) ends in the file."""
        self._after = after.seq
        self._seq, self._prev = after.seq, after.hash
        self._pending = b""

    def take(self, chunk: bytes) -> bool:
        """Read on through ``chunk``; ``False`` once a line does not continue the log (nothing after it is
        needed)."""
        data = self._pending + chunk if self._pending else chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        return all(map(self._continues, lines)) and len(self._pending) <= MAX_LINE_BYTES

    def _continues(self, line: bytes) -> bool:
        if not check_line(line):
            return False
        try:
            event = decode_event(line)
        except (msgspec.MsgspecError, UnicodeDecodeError):
            return False
        if event.seq <= self._after and not self.records:  # moved already
            self.end += len(line) + 1
            return True
        if event.seq != self._seq + 1 or event.prev != self._prev or event.v > FORMAT_VERSION:
            return False
        self.records.append((line, event))
        self.lines.append(line + b"\n")
        self._seq, self._prev = event.seq, line_hash(line)
        self.end += len(line) + 1
        return True
