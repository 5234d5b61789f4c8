"""The entries view: fold events into the current :class:`~ledger.events.VideoMetadata` of each entry.

``apply(entry, event)`` is pure: the entry before (``None`` for a new one) and an event give the entry
after. What each event does to an entry (``docs/lifecycle.md``):

- ``pending`` / ``generating``: sets status, prompt and localPath; clears completedAt and error.
- ``ready``: sets status and localPath, completedAt to the event's time; clears error.
- ``failed``: sets status and error, completedAt to the event's time; keeps prompt and localPath.
- ``imported``: sets every field as the imported entry had it, timestamps included.
- ``createdAt`` is the time of the entry's first event and never changes; ``updatedAt`` is the time of its
  last event.
- ``attempt``: a ``generating`` or ``pending`` event that names one (format 3) sets it to that number; a
  ``generating`` event of format 2 sets it to its own ``seq``; ``ready``/``failed`` set it to the attempt
  they name; every other event clears it.
- ``renewed`` (a running attempt's lease renewed) sets only ``updatedAt``; ``policy`` is no entry's event
  and changes nothing.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator
from typing import Final

import msgspec

from ledger.events import (
    EventType,
    Failed,
    Generating,
    Imported,
    Pending,
    Policy,
    Ready,
    Renewed,
    VideoMetadata,
)

__all__ = ("Entries", "KeyedRuns", "apply", "as_of", "fold")

Entries = dict[tuple[str, str], VideoMetadata]
"""The state of the entries view: each entry by ``(spotId, eraId)``."""

_RUN: Final = 4096
"""Events taken at a time by :func:`fold`."""
_FEW: Final = 16
"""Fewer events than this in all are folded one by one (cheaper than the dicts for so few)."""
_SETS_PROMPT: Final = frozenset({Pending, Generating, Imported})
_key_of = operator.attrgetter("spot_id", "era_id")
_ts_of = operator.attrgetter("ts")
_created_of = operator.attrgetter("created_at")
_events_of = operator.itemgetter(1)


class KeyedRuns:
    """Events in runs (lists), each with its events' keys ``(spotId, eraId)``, as a reader that already
    computed them has them: :func:`fold` takes the runs as they are (rather than slicing the events into
    runs and computing the keys again). Iterating gives the events in order."""

    __slots__ = ("runs",)

    def __init__(self, runs: Iterable[tuple[list[tuple[str, str]], list[EventType]]]) -> None:
        self.runs = runs

    def __iter__(self) -> Iterator[EventType]:
        return itertools.chain.from_iterable(map(_events_of, self.runs))


def apply(entry: VideoMetadata | None, event: EventType) -> VideoMetadata:
    """The entry after ``event`` (a ``policy`` event is no entry's: never given here)."""
    if isinstance(event, Renewed | Policy):
        assert entry is not None and isinstance(event, Renewed)  # a renewal is legal only while generating
        return msgspec.structs.replace(entry, updated_at=event.ts)
    if entry is None:
        return _after(event, "", None, event.ts)
    return _after(event, entry.prompt, entry.local_path, entry.created_at)


def fold(events: Iterable[EventType], state: Entries | None = None) -> Entries:
    """Apply ``events`` in order to ``state`` (a new empty state by default) and return it.

    The same as calling :func:`apply` for each event in turn, done lazily: it keeps, per entry, only what
    decides the result (its last event, the last event that set its prompt, the localPath a ``failed``
    event keeps, the time of its first event, the createdAt of its last import), gathered with C-level
    dict updates over runs of events, and builds each entry once at the end. Only ``failed`` and
    ``imported`` events, and each entry's first event, take a step of Python of their own.
    ``tests/test_properties.py`` holds it equal to the plain loop, for any sequence of events.
    """
    entries: Entries = {} if state is None else state
    runs = _runs_of(events, entries)
    if runs is None:
        return entries
    seen = _Seen()
    for given, run in runs:
        if run:
            seen.gather(run, list(map(_key_of, run)) if given is None else given, entries)
    for key, event in seen.last.items():
        before = entries.get(key)
        created: str | None = seen.imported.get(key)
        if created is None:
            created = seen.first_ts[key] if before is None else before.created_at
        prompt_event = seen.prompted.get(key)
        if isinstance(prompt_event, Pending | Generating | Imported):
            prompt = prompt_event.prompt
        else:
            prompt = "" if before is None else before.prompt
        entries[key] = _after(event, prompt, seen.kept_path.get(key), created)
    for key, renewal in seen.renewed.items():  # a renewal after the entry's last event moves its updatedAt on
        entry = entries.get(key)
        if entry is not None and (key not in seen.last or seen.last[key].seq < renewal.seq):
            entries[key] = msgspec.structs.replace(entry, updated_at=renewal.ts)
    return entries


_Runs = Iterator[tuple[list[tuple[str, str]] | None, list[EventType]]]


def _runs_of(events: Iterable[EventType], entries: Entries) -> _Runs | None:
    """``events`` in runs of up to :data:`_RUN`, each with its keys if known; ``None`` when they were few
    and are already applied to ``entries`` by the plain loop (a refresh: cheaper so)."""
    if isinstance(events, KeyedRuns):
        return iter(events.runs)
    it = iter(events)
    run = list(itertools.islice(it, _RUN))
    if len(run) < _FEW:
        for event in run:
            if isinstance(event, Policy):
                continue
            key = (event.spot_id, event.era_id)
            entries[key] = apply(entries.get(key), event)
        return None
    more = iter(lambda: list(itertools.islice(it, _RUN)), [])
    return zip(itertools.repeat(None), itertools.chain([run], more))


class _Seen:
    """What :func:`fold` keeps per entry while it reads the runs: what decides the entry it builds."""

    __slots__ = ("first_ts", "imported", "kept_path", "last", "prompted", "renewed")

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], EventType] = {}
        self.renewed: dict[tuple[str, str], Renewed] = {}  # each entry's last renewal
        self.prompted: dict[tuple[str, str], EventType] = {}
        self.kept_path: dict[tuple[str, str], str | None] = {}  # the localPath a failed event keeps
        self.first_ts: dict[tuple[str, str], str] = {}
        self.imported: dict[tuple[str, str], str] = {}

    def gather(self, run: list[EventType], keys: list[tuple[str, str]], entries: Entries) -> None:
        """Take in one run (its keys given), with C-level dict updates where it can."""
        last = self.last
        types = list(map(type, run))
        if Renewed in types or Policy in types:
            keys, run, types = self._entry_events(keys, run, types)
        known = len(last)
        sets_prompt = map(_SETS_PROMPT.__contains__, types)
        self.prompted.update(itertools.compress(zip(keys, run, strict=True), sets_prompt))
        if Failed in types:
            self._before_failed(run, keys, types, entries)
        else:
            last.update(zip(keys, run, strict=True))
        if len(last) != known:  # entries seen for the first time: the time of each one's first event
            firsts = dict(zip(reversed(keys), map(_ts_of, reversed(run)), strict=True))
            for key in firsts.keys() - self.first_ts.keys():
                self.first_ts[key] = firsts[key]
        if Imported in types:
            imports = [event for event in run if isinstance(event, Imported)]
            self.imported.update(zip(map(_key_of, imports), map(_created_of, imports), strict=True))

    def _entry_events(
        self, keys: list[tuple[str, str]], run: list[EventType], types: list[type]
    ) -> tuple[list[tuple[str, str]], list[EventType], list[type]]:
        """The run without its ``renewed`` and ``policy`` events (each entry's last renewal kept)."""
        for key, event in zip(keys, run, strict=True):
            if isinstance(event, Renewed):
                self.renewed[key] = event
        keep = [t is not Renewed and t is not Policy for t in types]
        return (
            list(itertools.compress(keys, keep)),
            list(itertools.compress(run, keep)),
            list(itertools.compress(types, keep)),
        )

    def _before_failed(
        self, run: list[EventType], keys: list[tuple[str, str]], types: list[type], entries: Entries
    ) -> None:
        """Take in a run holding ``failed`` events, noting the entry's localPath just before each."""
        last, done = self.last, 0
        for i in itertools.compress(range(len(run)), map(operator.is_, types, itertools.repeat(Failed))):
            last.update(zip(keys[done:i], run[done:i], strict=True))
            done, key = i, keys[i]
            previous = last.get(key)
            if previous is None:
                entry = entries.get(key)
                self.kept_path[key] = None if entry is None else entry.local_path
            elif isinstance(previous, Pending | Generating | Ready | Imported):
                self.kept_path[key] = previous.local_path
        last.update(zip(keys[done:], run[done:], strict=True))


def _after(event: EventType, prompt: str, kept_path: str | None, created: str | None) -> VideoMetadata:
    """The entry after ``event``, given what the entry had before it: its prompt (which ``ready`` and
    ``failed`` keep), its localPath (which ``failed`` keeps), ``""`` and ``None`` for a new entry, and its
    createdAt."""
    if isinstance(event, Ready):
        return VideoMetadata(
            spot_id=event.spot_id,
            era_id=event.era_id,
            prompt=prompt,
            local_path=event.local_path,
            status="ready",
            created_at=created,
            completed_at=event.ts,
            updated_at=event.ts,
            attempt=event.attempt,
        )
    if isinstance(event, Failed):
        return VideoMetadata(
            spot_id=event.spot_id,
            era_id=event.era_id,
            prompt=prompt,
            local_path=kept_path,
            status="failed",
            created_at=created,
            completed_at=event.ts,
            error=event.error,
            updated_at=event.ts,
            attempt=event.attempt,
        )
    if isinstance(event, Imported):
        return VideoMetadata(
            spot_id=event.spot_id,
            era_id=event.era_id,
            prompt=event.prompt,
            local_path=event.local_path,
            status=event.status,
            created_at=event.created_at,
            completed_at=event.completed_at,
            error=event.error,
            updated_at=event.ts,
        )
    assert isinstance(event, Pending | Generating)  # renewed and policy events never reach here
    return VideoMetadata(
        spot_id=event.spot_id,
        era_id=event.era_id,
        prompt=event.prompt,
        local_path=event.local_path,
        status=event.STATUS,
        created_at=created,
        updated_at=event.ts,
        attempt=_number(event),
    )


def _number(event: Pending | Generating) -> int | None:
    """The attempt a ``pending``/``generating`` event leaves on its entry: the number it names (format 3);
    else a format-2 ``generating`` event's own ``seq`` (format 1 numbered no attempt)."""
    if event.attempt is not None:
        return event.attempt
    return event.seq if event.v >= 2 and isinstance(event, Generating) else None


def as_of(events: Iterable[EventType], *, seq: int | None = None, ts: str | None = None) -> Entries:
    """The entries as they stood after event ``seq`` and/or at time ``ts`` (events at exactly that seq or
    time included). Stops reading at the first later event: the log is in seq order and time never goes
    backwards in it."""
    entries: Entries = {}
    for event in events:
        if (seq is not None and event.seq > seq) or (ts is not None and event.ts > ts):
            break
        if isinstance(event, Policy):
            continue
        key = (event.spot_id, event.era_id)
        entries[key] = apply(entries.get(key), event)
    return entries
