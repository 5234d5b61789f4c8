"""The audit: ``verify`` and its report, heads and anchors, the snapshot probe, the lawful runs.

:func:`verify` walks a whole store checking every record (the store's ``check``:
framing, crc, ``seq``, chain) and every change (time order, lifecycle: :func:`lawful_runs`), then the
checkpoint and the snapshot against the store; it changes nothing. ``rebuild`` replays through the same
rules (:func:`lawful`), so the two agree on what a sound log is.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from ledger import lifecycle
from ledger import projector as projector_room
from ledger.backend import Audit, EventStore, Head, Progress, TornTail, reported
from ledger.errors import CorruptLogError, InvalidEntryError
from ledger.events import FORMAT_VERSION, GENESIS_HASH, EventType, Status, normalize_id
from projections import entries as entries_view
from projections import stats as stats_view

__all__ = ("VerifyReport", "check_anchor", "lawful", "lawful_runs", "parse_head", "verify")

_ts_of = operator.attrgetter("ts")
_key_of = operator.attrgetter("spot_id", "era_id")

_HEAD: Final = re.compile(r"([0-9]{1,19}):([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`Ledger.verify <ledger.store.Ledger.verify>` found. ``ok`` is true when ``problem`` is
    ``None``."""

    events: int
    """Whole events read up to the first problem; with a :attr:`head`, the events up to it (what is known
    durable), so the two always agree."""
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
    killed before its fsync left are verified but not named (:attr:`undurable`)."""
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
    undurable: int = 0
    """Events after :attr:`head` that verified but are not known durable (a writer died before its fsync;
    the next writer makes them durable, or a power loss may take them): counted in neither ``events`` nor
    ``head``."""

    @property
    def ok(self) -> bool:
        return self.problem is None


def parse_head(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as :attr:`VerifyReport.head` prints it) as ``(seq, hash)``; raises
    :class:`~ledger.errors.InvalidEntryError` for anything else."""
    match = _HEAD.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidEntryError(
            f"a head is SEQ:HASH (an event's seq, a colon, 64 hex digits, as verify prints it), not {text!r}"
        )
    return int(match.group(1)), match.group(2)


def check_anchor(anchor: tuple[int, str], end: Head, found: str | None) -> str | None:
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


class _Pair(NamedTuple):
    """The snapshot and checkpoint as verify reads them."""

    checkpoint: projector_room.Checkpoint | None
    """``None`` also when it describes another snapshot (then ``other``)."""
    other: bool
    snapshot: bytes | None
    unreadable: str | None
    """Why the snapshot's bytes cannot be read, if so."""


class _Walk(NamedTuple):
    """What the walk over every record found."""

    problem: str | None
    line: int | None
    statuses: dict[tuple[str, str], Status]
    skew: stats_view.ClockSkew | None
    anchor_hash: str | None
    """The hash of the anchored event's line where the walk met it."""


def verify(
    projector: projector_room.Projector, *, expect_head: str | None = None, progress: Progress | None = None
) -> VerifyReport:
    """Walk the whole store of ``projector`` checking every record and change, then its checkpoint and its
    snapshot against the store (:meth:`Ledger.verify <ledger.store.Ledger.verify>` says what is checked).
    Reports the first problem; changes nothing."""
    store = projector.store
    anchor = None if expect_head is None else parse_head(expect_head)
    pair = _read_pair(projector)
    probe = _probe(pair, projector.checkpoint_path)
    audit = store.check()
    walk = _walk(audit, probe, anchor, progress)
    end = audit.end
    problem, note = walk.problem, None
    durable = _durable_head(store, end) if problem is None else None
    if problem is None:
        problem, note = _judge_files(projector, pair, probe, end)
    if problem is None and anchor is not None:
        problem = check_anchor(anchor, end, walk.anchor_hash)
    line = walk.line
    return VerifyReport(
        events=durable.seq if durable is not None else end.seq if line is None else min(end.seq, line),
        entries=len(walk.statuses),
        problem=problem,
        line=line,
        torn=audit.torn if problem is None else None,
        checkpoint_seq=None if pair.checkpoint is None else pair.checkpoint.seq,
        head=None if durable is None else f"{durable.seq}:{durable.hash}",
        snapshot_seq=None if probe is None or problem is not None else probe.match,
        note=note,
        skew=walk.skew,
        non_nfc=_non_nfc(store, walk.statuses),
        undurable=0 if durable is None else end.seq - durable.seq,
    )


def _probe(pair: _Pair, checkpoint_path: Path) -> _SnapshotProbe | None:
    """How the snapshot is to be matched against the replay, if there is one to match."""
    checkpoint, snapshot = pair.checkpoint, pair.snapshot
    if snapshot is None:
        return None
    if checkpoint is not None and projector_room.describes(checkpoint, snapshot):
        return _SnapshotProbe(snapshot, checkpoint.seq, exact=True)
    if checkpoint is not None or checkpoint_path.exists():
        return _SnapshotProbe(snapshot, 0 if checkpoint is None else checkpoint.seq)
    return _SnapshotProbe(snapshot, 0, at_end=True)


def _walk(
    audit: Audit, probe: _SnapshotProbe | None, anchor: tuple[int, str] | None, progress: Progress | None
) -> _Walk:
    """Every record of ``audit`` checked, its runs lawful, shown to ``probe`` as far as it needs; ``progress``
    told as the records are read."""
    anchor_seen: list[str] = []  # the hash of the anchored event's line, once the walk meets it
    statuses: dict[tuple[str, str], Status] = {}  # each entry's status so far
    problems: list[tuple[str, int]] = []
    skew = stats_view.SkewWatch()
    lawful_ = lawful_runs(reported((b.events for b in audit), progress), statuses, problems)
    runs = _skew_watched((events for _, events in lawful_), skew)
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
    genesis = GENESIS_HASH if anchor is not None and anchor[0] == 0 else None
    return _Walk(problem, line, statuses, skew.result(), anchor_seen[0] if anchor_seen else genesis)


def _judge_files(
    projector: projector_room.Projector, pair: _Pair, probe: _SnapshotProbe | None, end: Head
) -> tuple[str | None, str | None]:
    """The problem with the checkpoint or the snapshot, once the log verified, and a note on a harmless
    state they are in."""
    problem = note = None
    if pair.checkpoint is not None:
        problem = _check_checkpoint(projector.store, pair.checkpoint, end)
    if problem is None and probe is not None:
        problem, note = _judge_snapshot(projector, probe, pair, end)
    if problem is None and pair.unreadable is not None:
        problem = pair.unreadable
    elif problem is None and pair.snapshot is None and pair.checkpoint is not None:
        problem = f"the snapshot {projector.snapshot_path} is missing, but its checkpoint is there"
    return problem, note


def _non_nfc(store: EventStore, keys: Collection[tuple[str, str]]) -> str | None:
    """Why some ids are not in NFC, if some are: the entries' keys (not the events) are checked, first
    all at once in C (ASCII is NFC), then one by one only if some id is not ASCII; only when one is
    found is the log read again for its first event."""
    if "".join(itertools.chain.from_iterable(keys)).isascii():
        return None
    odd = {
        key
        for key in keys
        if not (key[0].isascii() and key[1].isascii()) and (normalize_id(key[0]), normalize_id(key[1])) != key
    }
    if not odd:
        return None
    first = next((event.seq for event in store.events() if event.key in odd), None)
    return (
        f"{len(odd)} entries have an id not in NFC (written before ids were normalised), the first at "
        f"event {first}: reach them by that exact spelling; an NFC spelling of it finds nothing"
    )


def _read_pair(projector: projector_room.Projector) -> _Pair:
    """The checkpoint, the snapshot's bytes and why they cannot be read, if so, as one consistent pair
    (:func:`ledger.projector.read_pair`), so a projector at work is not reported as a crash."""
    ref, ops = projector.ref, projector.ops

    def read() -> _Pair:
        # the checkpoint first: a snapshot read after it is as new as it, or newer
        checkpoint = projector_room.read_checkpoint(projector.checkpoint_path, ops)
        other = checkpoint is not None and (checkpoint.snapshot != ref or checkpoint.v != FORMAT_VERSION)
        kept = None if other else checkpoint
        try:
            snapshot = projector_room.read_untrusted(projector.snapshot_path, ops)
        except OSError as exc:
            why = f"the snapshot {projector.snapshot_path} cannot be read ({exc.strerror})"
            return _Pair(kept, other, None, why)
        return _Pair(kept, other, snapshot, None)

    def agree(pair: _Pair) -> bool:
        checkpoint, snapshot = pair.checkpoint, pair.snapshot
        return checkpoint is None or snapshot is None or projector_room.describes(checkpoint, snapshot)

    return projector_room.read_pair(read, agree, projector.lock)


def _durable_head(store: EventStore, end: Head) -> Head:
    """The head to keep: that of the last durable event (:meth:`ledger.backend.EventStore.head`), at
    most ``end``. Lines beyond the fsynced size on record were left by a writer that died before its
    fsync, and a power loss may still take them: a head kept from one would read as a rewrite once
    another event takes its seq."""
    durable = store.head()
    return durable if durable.seq < end.seq else end


def _check_checkpoint(store: EventStore, checkpoint: projector_room.Checkpoint, end: Head) -> str | None:
    """Why ``checkpoint`` does not fit the log that ends at ``end`` (every field it gives a writer:
    ``offset``, ``seq``, ``lastHash``, ``lastTs``, against the line at ``offset``)."""
    if checkpoint.seq > end.seq or checkpoint.offset > end.at:
        return (
            f"the log ends at event {end.seq} but the snapshot's checkpoint is at event "
            f"{checkpoint.seq}: trailing events are missing from the log"
        )
    if projector_room.holds(store, checkpoint) is None:
        return f"the snapshot's checkpoint (event {checkpoint.seq}) does not match the log"
    return None


def _judge_snapshot(
    projector: projector_room.Projector, probe: _SnapshotProbe, pair: _Pair, end: Head
) -> tuple[str | None, str | None]:
    """The problem with the snapshot (or ``None``), and a note on a harmless state it is in."""
    probe.finish(end.seq)
    where, checkpoint = projector.snapshot_path, pair.checkpoint
    if probe.match is None:
        return _unmatched(probe, where, projector.checkpoint_path.parent), None
    if probe.exact or probe.at_end:
        return None, None
    if checkpoint is None:
        why = "describes another snapshot" if pair.other else "cannot be read (what a power loss can leave)"
        return None, (
            f"{projector.checkpoint_path.name} {why}; the snapshot is the replay of the log at event "
            f"{probe.match}; the next writer rewrites the checkpoint"
        )
    return None, (
        f"the checkpoint (event {checkpoint.seq}) is behind the snapshot, which is the replay of the log "
        f"at event {probe.match}: a crash or a full disk came between writing the two (harmless); the "
        "next writer rewrites the checkpoint"
    )


def _unmatched(probe: _SnapshotProbe, where: Path, directory: Path) -> str:
    """Why a snapshot that is the replay of the log at no event it could be is a problem."""
    if probe.exact:
        return f"the snapshot {where} is not the replay of the log up to event {probe.low}"
    if not probe.at_end:
        return (
            f"the snapshot {where} is not the replay of the log at any event from {probe.low} on "
            "(and its checkpoint does not describe it)"
        )
    unheld = probe.unheld()
    adopt = (
        f"; it holds {unheld} entries the log does not: adopt them with `video-ledger --dir "
        f"{directory} import {where}`"
        if unheld
        else ""
    )
    return f"the snapshot {where} has no checkpoint and is not the replay of the log{adopt}"


def lawful(where: Path) -> Callable[[projector_room.Runs], entries_view.KeyedRuns]:
    """The check ``rebuild`` replays through (:meth:`ledger.projector.Projector.rebuild`): the runs'
    events as long as their time order and lifecycle changes are lawful, as :func:`verify` has them; at
    the end, :class:`~ledger.errors.CorruptLogError` naming the first that is not (in ``where``)."""

    def checked(runs: projector_room.Runs) -> entries_view.KeyedRuns:
        problems: list[tuple[str, int]] = []

        def verdict() -> Iterator[tuple[list[tuple[str, str]], list[EventType]]]:  # at the end: raise
            if problems:
                problem, seq = problems[0]
                raise CorruptLogError(where, seq, f"{problem}; the snapshot was left as it is")
            yield from ()

        return entries_view.KeyedRuns(itertools.chain(lawful_runs(runs, {}, problems), verdict()))

    return checked


class _SnapshotProbe:
    """Finds an event after which the replay of the log is exactly the snapshot's bytes ``data``: event
    ``low`` (``exact``), the last one (``at_end``), or else any from ``low`` on. :meth:`run` takes the
    log's events and folds them in one pass (a fold builds each entry once), only as far as it needs to."""

    def __init__(self, data: bytes, low: int, *, exact: bool = False, at_end: bool = False) -> None:
        self.data, self.low, self.exact, self.at_end = data, low, exact, at_end
        self.state: entries_view.Entries = {}
        self.match: int | None = None

    def _same(self) -> bool:
        return projector_room.encode_snapshot(self.state) == self.data

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
        items = projector_room.decode_snapshot(self.data)
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
            if event.type != "policy":  # no entry's event
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
        return len(projector_room.untrusted_keys(self.data).difference(self.state))


def lawful_runs(
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
