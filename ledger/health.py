"""``video-ledger status``: the ledger's health, cheap at any log size (a monitor's 15-second scrape).

It reads the checkpoint, the snapshot it vouches for (only the ids, status and update time of each entry),
and the log after the checkpoint's record (what the snapshot lacks), found through the store's bookmark:
its cost grows with the snapshot's lag, never with the log's length. Leases are not in the snapshot: for
the attempts it shows running, the log is read back from its end to where each of them started
(:meth:`~ledger.backend.EventStore.newest_first`), and the work loop's index
(:class:`~ledger.queue.WorkIndex`) counts the expired ones; that reads back as far as the oldest running
attempt, never further. Nothing is created or written.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager

import msgspec

from ledger.backend import GENESIS, EventStore, Head
from ledger.errors import NoLedgerError
from ledger.events import STATUSES, EventType, Generating, Imported, format_ts
from ledger.fileops import FileOps, lock_is_held
from ledger.layout import Layout
from ledger.log import EventLog
from ledger.projector import Checkpoint, describes, holds, read_checkpoint
from ledger.queue import WorkIndex
from ledger.stores import open_chosen

__all__ = ("MAX_LAG", "Status", "open_readonly", "status", "timestamp")

MAX_LAG = 60.0
"""Seconds the app's file may lack a recorded event before ``status`` calls it a problem."""


class Status(msgspec.Struct, kw_only=True, rename="camel"):
    """What ``status`` found; ``problems`` empty means healthy."""

    head_seq: int
    """The log's last durable event (0: empty)."""
    head_time: str | None
    snapshot_seq: int | None
    """The event the app's file reflects (its checkpoint), ``None`` without a checkpoint."""
    lag_events: int
    """Events recorded but not yet in the app's file."""
    lag_seconds: float
    """How long the oldest of those has waited (0 when the file is current)."""
    last_event_age_seconds: float | None
    """Seconds since the last event was recorded."""
    entries: int
    by_status: dict[str, int]
    live_attempts: int
    """Entries generating now."""
    expired_leases: int
    """Running attempts whose lease ran out and which nothing has reaped yet (failed or requeued)."""
    watcher: bool
    """A ``video-ledger watch`` runs on this directory."""
    problems: list[str] = []

    @property
    def healthy(self) -> bool:
        return not self.problems


class _Row(msgspec.Struct, rename="camel"):
    """The members of a snapshot entry that ``status`` reads (the rest are skipped by the decoder)."""

    spot_id: str
    era_id: str
    status: str


_rows = msgspec.json.Decoder(list[_Row])


def status(
    directory: str | os.PathLike[str] | None = None,
    *,
    snapshot: str | os.PathLike[str] | None = None,
    store: EventStore | str | os.PathLike[str] | None = None,
    max_lag: float = MAX_LAG,
    now: dt.datetime | None = None,
) -> Status:
    """The health of the ledger in ``directory`` (its events in ``store``, as :class:`ledger.Ledger` takes
    them). Raises what a read-only open raises (no ledger, a store that cannot be reached)."""
    moment = now or dt.datetime.now(dt.UTC)
    with open_readonly(directory, snapshot, store) as (layout, events):
        checkpoint = read_checkpoint(layout.checkpoint)
        statuses, start, problems = _trusted_base(layout, events, checkpoint)
        index = _running_before(events, start, [k for k, s in statuses.items() if s == "generating"])
        head, first_ts, unseen = _tail(events, start, statuses, index)
    expired = len(index.expired(format_ts(moment)))
    if expired:
        problems.append(
            f"{expired} running attempt{'' if expired == 1 else 's'} outlived the lease and nothing reaped "
            f"{'it' if expired == 1 else 'them'}: a worker gone, and no claim or reap since?"
        )
    lag = unseen if checkpoint is None else max(0, head.seq - checkpoint.seq)
    if checkpoint is None:
        problems.append("the app's file has no checkpoint: no write or watch has projected this ledger yet")
    lag_seconds = 0.0 if first_ts is None or not lag else _age(first_ts, moment)
    if lag and lag_seconds > max_lag:
        problems.append(
            f"the app's file is {lag} event{'s' if lag != 1 else ''} behind the log, the oldest waiting "
            f"{lag_seconds:.0f} s (more than {max_lag:g} s): is a writer deferring with no watch running?"
        )
    counts = Counter(statuses.values())
    return Status(
        head_seq=head.seq,
        head_time=head.ts or None,
        snapshot_seq=None if checkpoint is None else checkpoint.seq,
        lag_events=lag,
        lag_seconds=lag_seconds,
        last_event_age_seconds=_age(head.ts, moment) if head.ts else None,
        entries=len(statuses),
        by_status={s: counts.get(s, 0) for s in STATUSES},
        live_attempts=counts.get("generating", 0),
        expired_leases=expired,
        watcher=lock_is_held(FileOps(), layout.watch_lock),
        problems=problems,
    )


@contextmanager
def open_readonly(
    directory: str | os.PathLike[str] | None,
    snapshot: str | os.PathLike[str] | None,
    store: EventStore | str | os.PathLike[str] | None,
) -> Iterator[tuple[Layout, EventStore]]:
    """The layout and the store of a ledger opened for reading only (closed at the end when opened here):
    nothing is created; a directory without a log is :class:`~ledger.errors.NoLedgerError`."""
    directory, given, opened = open_chosen(directory, store, readonly=True)
    layout = Layout.of(directory, snapshot)
    if given is None:
        if not layout.log.exists():
            raise NoLedgerError(f"no ledger at {layout.directory} (it holds no {layout.log.name})")
        given, opened = EventLog(layout.log, FileOps()), True
    if not opened:
        yield layout, given
        return
    with closing(given):
        yield layout, given


def _trusted_base(
    layout: Layout, events: EventStore, checkpoint: Checkpoint | None
) -> tuple[dict[tuple[str, str], str], Head, list[str]]:
    """Each entry's status as the app's file has it and where in the log that is, when the checkpoint
    vouches for the file and the store holds the checkpoint's record; else nothing, from the start."""
    if checkpoint is None:
        return {}, GENESIS, []
    try:  # a regular file of the size the checkpoint names, or no more: never a FIFO read or a device
        data = FileOps().read_regular(layout.snapshot, checkpoint.snapshot_size, follow_symlinks=True)
    except OSError as exc:
        return {}, GENESIS, [f"the app's file {layout.snapshot} cannot be read ({exc.strerror or exc})"]
    rows = _decoded(data) if describes(checkpoint, data) else None
    if rows is None:
        return {}, GENESIS, [f"the app's file {layout.snapshot} is not the one its checkpoint names"]
    held = holds(events, checkpoint)
    if held is None:
        problem = (
            f"the checkpoint names event {checkpoint.seq}, which the log does not hold as it says "
            "(a rewritten or cut log: run verify)"
        )
        return {}, GENESIS, [problem]
    return rows, held, []


def _decoded(data: bytes) -> dict[tuple[str, str], str] | None:
    """Each entry's status as the snapshot ``data`` says, or ``None`` if it is not a snapshot the ledger
    writes (its checkpoint is a checksum, not a seal: a file and checkpoint written by hand to agree)."""
    try:
        rows = _rows.decode(data)
    except msgspec.MsgspecError:
        return None
    found = {(r.spot_id, r.era_id): r.status for r in rows}
    return found if len(found) == len(rows) and set(found.values()) <= set(STATUSES) else None


def _running_before(events: EventStore, start: Head, running: list[tuple[str, str]]) -> WorkIndex:
    """The work index of the attempts ``running`` at ``start`` (the snapshot's ``generating`` entries):
    each one's events from its start (its ``generating`` event, or an import) on, found reading the log
    back from its end, no further back than the oldest of them started."""
    index, wanted, found = WorkIndex(), set(running), list[EventType]()
    if wanted:
        for _, event in events.newest_first():
            if event.seq > start.seq:  # the tail: folded after these
                continue
            if event.key in wanted:
                found.append(event)
                if isinstance(event, Generating | Imported):
                    wanted.discard(event.key)
                    if not wanted:
                        break
    index.fold(reversed(found))
    return index


def _tail(
    events: EventStore, start: Head, statuses: dict[tuple[str, str], str], index: WorkIndex
) -> tuple[Head, str | None, int]:
    """Fold the records after ``start`` into ``statuses`` and ``index``: the head, the first such record's
    time, and how many there were."""
    head, first_ts, count = start, None, 0
    for batch in events.read(start):
        if first_ts is None:
            first_ts = batch.events[0].ts
        index.fold(batch.events)
        for event in batch.events:
            statuses[event.spot_id, event.era_id] = event.new_status
        count += len(batch.events)
        head = batch.end
    return head, first_ts, count


def timestamp(ts: str) -> float:
    """An event time as seconds since the epoch."""
    return dt.datetime.fromisoformat(ts).timestamp()


def _age(ts: str, now: dt.datetime) -> float:
    return max(0.0, now.timestamp() - timestamp(ts))
