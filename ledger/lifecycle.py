"""The lifecycle of an entry, written once: which status changes are legal and what event each one records.

========================  ==============================================
from                      to
========================  ==============================================
(new entry)               pending, generating
pending                   generating (and pending: edit while queued)
generating                ready, failed
ready                     pending, generating (regenerate)
failed                    pending, generating (retry)
========================  ==============================================

Rules beside the table (``docs/lifecycle.md`` explains each):

- Asking for exactly the state an entry already has succeeds and records nothing, so a retried pipeline
  step is safe.
- A *pending* entry can be changed in place (a new prompt or localPath while queued); it records a new
  ``pending`` event. Any other change that keeps the status but alters a field is illegal: a running
  attempt's prompt is fixed, and a finished attempt is not rewritten (start a new one instead).
- ``ready`` needs ``localPath``; ``failed`` needs ``error``; ``error`` is allowed only on ``failed``.
- ``ready`` and ``failed`` end the attempt that is running: they keep its prompt (a different prompt is
  illegal), and ``failed`` keeps its localPath.
- Attempts are numbered from 1 per entry (format 3): a ``generating`` event records its attempt's number,
  one more than the entry's last (:func:`next_attempt`), and a ``pending`` event the number of the last, so
  the count goes on across requeues. An attempt started in format 2 is numbered by the ``seq`` of its
  ``generating`` event, one of format 1 not at all. ``ready`` and ``failed`` name the attempt they end
  (``attempt``). A request that names an attempt other than the
  entry's current one is illegal, even one that asks for the state the entry already has; a request that
  names none ends the current one.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ledger.errors import IllegalTransitionError, InvalidEntryError
from ledger.events import EVENT_TYPES, EventType, Imported, Policy, Renewed, Status, VideoMetadata

__all__ = ("TRANSITIONS", "Change", "check_entry", "first_illegal", "is_legal", "next_attempt", "plan_change")

TRANSITIONS: Final[Mapping[Status | None, frozenset[Status]]] = {
    None: frozenset({"pending", "generating"}),
    "pending": frozenset({"pending", "generating"}),
    "generating": frozenset({"ready", "failed"}),
    "ready": frozenset({"pending", "generating"}),
    "failed": frozenset({"pending", "generating"}),
}
"""Legal status changes: ``TRANSITIONS[current]`` is the set of statuses an entry may move to."""


def is_legal(current: Status | None, new: Status) -> bool:
    """Whether the table allows ``current`` → ``new``."""
    return new in TRANSITIONS[current]


_STATUS_AFTER: Final[Mapping[tuple[Status | None, type[EventType]], Status]] = {
    (current, cls): status
    for current, allowed in TRANSITIONS.items()
    for status, cls in EVENT_TYPES.items()
    if status in allowed
}
"""The status after an event of type ``cls`` on an entry that is ``current``, for each legal pair."""
_key_of = operator.attrgetter("spot_id", "era_id")
_STATUS_OF: Final[Mapping[type[EventType], Status]] = {cls: status for status, cls in EVENT_TYPES.items()}
"""The status an event of each type but ``imported`` leaves."""
_LEGAL: Final = frozenset(_STATUS_AFTER)
"""The legal (status before, event type) pairs, ``imported`` aside."""
_FEW: Final = 16
"""Fewer events than this are checked one by one (cheaper than the C-level passes for so few)."""
_LAYERS: Final = 8
"""The most passes :func:`_all_legal` makes: an entry with more events in one run leaves it to the loop."""


def first_illegal(
    events: Sequence[EventType],
    statuses: dict[tuple[str, str], Status],
    keys: Sequence[tuple[str, str]] | None = None,
) -> int | None:
    """The index of the first of ``events`` that the table forbids (an ``imported`` event is legal only on
    a new entry), or ``None``. ``statuses`` holds each entry's status before ``events`` and is brought
    forward past the legal ones. ``keys``, if given, are the events' keys.

    Many events without an ``imported`` one are first checked all at once with C-level loops
    (:func:`_all_legal`); only when that finds something wrong, or cannot tell cheaply, are they walked
    one by one, which finds the exact event. ``tests/test_properties.py`` holds the two ways equal."""
    if keys is None:
        keys = list(map(_key_of, events))
    if len(events) >= _FEW:
        types = list(map(type, events))
        if Imported not in types and Renewed not in types and Policy not in types:
            after = dict(zip(keys, map(_STATUS_OF.__getitem__, types), strict=True))  # each entry's last
            if len(after) == len(keys):  # one event per entry (the usual run): each checked against statuses
                legal = all(map(_LEGAL.__contains__, zip(map(statuses.get, after), types, strict=True)))
            else:
                legal = _all_legal(keys, types, statuses)
            if legal:
                statuses.update(after)
                return None
    get = statuses.get
    for i, (key, cls) in enumerate(zip(keys, map(type, events), strict=True)):
        if cls is Policy:
            continue  # no entry's event
        if cls is Renewed:  # renews a running attempt's lease: only while generating
            if get(key) != "generating":
                return i
            continue
        status = _STATUS_AFTER.get((get(key), cls))
        if status is None:
            event = events[i]
            if not isinstance(event, Imported) or get(key) is not None:
                return i
            status = event.status
        statuses[key] = status
    return None


def _all_legal(
    keys: Sequence[tuple[str, str]], types: list[type[EventType]], statuses: Mapping[tuple[str, str], Status]
) -> bool:
    """Whether every event (of ``types``, on the entries ``keys``, none ``imported``) makes a change the
    table allows, given each entry's status before them in ``statuses`` (left as it is); ``False`` also
    when it cannot tell within :data:`_LAYERS` passes.

    An event's legality depends only on its type and the status the entry's previous event left, and that
    status only on the previous event's type. So the events are taken in layers: each entry's first event
    among those left, checked against ``statuses`` or the layer before, in one C-level pass per layer. An
    entry with more events in the run than there are layers (a hot entry) leaves it to the loop."""
    before: dict[tuple[str, str], Status] = {}  # the status the layers taken so far leave
    left_keys, left_types = keys, types
    for _ in range(_LAYERS):
        firsts = dict(zip(reversed(left_keys), reversed(range(len(left_keys))), strict=True))
        layer_keys, layer_types = firsts.keys(), list(map(left_types.__getitem__, firsts.values()))
        previous = (
            map(before.get, layer_keys, map(statuses.get, layer_keys))
            if before
            else map(statuses.get, layer_keys)
        )
        if not all(map(_LEGAL.__contains__, zip(previous, layer_types, strict=False))):
            return False
        if len(firsts) == len(left_keys):
            return True
        before.update(zip(layer_keys, map(_STATUS_OF.__getitem__, layer_types), strict=True))
        rest = list(map(operator.ne, map(firsts.__getitem__, left_keys), range(len(left_keys))))
        left_keys = list(itertools.compress(left_keys, rest))
        left_types = list(itertools.compress(left_types, rest))
    return False


class Change:
    """An event still to be sequenced: its class and its payload fields (the log adds the envelope)."""

    __slots__ = ("cls", "fields")

    def __init__(self, cls: type[EventType], fields: dict[str, Any]) -> None:
        self.cls = cls
        self.fields = fields


def _describe(status: Status | None) -> str:
    return "a new entry" if status is None else f"an entry that is {status}"


def plan_change(current: VideoMetadata | None, desired: VideoMetadata) -> Change | None:
    """The event that takes ``current`` to ``desired``, or ``None`` when nothing changes.

    ``desired`` must already be validated (:func:`ledger.events.validate_entry`). Raises
    :class:`InvalidEntryError` for an entry that is wrong in itself and :class:`IllegalTransitionError` for
    a change the lifecycle forbids.
    """
    check_entry(desired)
    status = desired.status
    where = f"{desired.spot_id}/{desired.era_id}"
    before = None if current is None else current.status
    if (
        status in ("ready", "failed")
        and desired.attempt is not None
        and (current is None or desired.attempt != current.attempt)
    ):
        raise IllegalTransitionError(
            f"{where}: cannot record {status} for attempt {desired.attempt}: it is not the entry's current "
            f"attempt ({_describe_attempt(current)}); nothing was recorded",
            current=before,
            requested=status,
        )
    if current is not None and status == before and _same_state(current, desired):
        return None
    if not is_legal(before, status):
        if status == before:
            reason = f"it is already {status}; only a pending entry can be changed in place"
        else:
            allowed = ", ".join(sorted(TRANSITIONS[before]))
            reason = f"{_describe(before)} can only become {allowed}"
        raise IllegalTransitionError(
            f"{where}: cannot set status {status}: {reason}", current=before, requested=status
        )

    if status in ("pending", "generating"):
        number = (
            next_attempt(current) if status == "generating" else None if current is None else current.attempt
        )
        return Change(
            EVENT_TYPES[status],
            {"prompt": desired.prompt, "local_path": desired.local_path, "attempt": number},
        )
    assert current is not None  # ready and failed are only legal after generating
    if desired.prompt != current.prompt:
        raise IllegalTransitionError(
            f"{where}: cannot change the prompt when an attempt ends ({status}); "
            "record pending or generating with the new prompt first",
            current=before,
            requested=status,
        )
    if status == "ready":
        return Change(EVENT_TYPES["ready"], {"local_path": desired.local_path, "attempt": current.attempt})
    if desired.local_path is not None and desired.local_path != current.local_path:
        raise IllegalTransitionError(
            f"{where}: a failed attempt keeps its localPath ({current.local_path!r})",
            current=before,
            requested=status,
        )
    return Change(EVENT_TYPES["failed"], {"error": desired.error, "attempt": current.attempt})


def next_attempt(current: VideoMetadata | None) -> int:
    """The number of an attempt that starts on ``current``: one more than the entry's last attempt (its
    ``attempt``), 1 for a new entry or one whose last number is not known (its last event, of format 1 or 2,
    was a ``pending`` or ``imported`` one: those kept no number)."""
    return 1 if current is None or current.attempt is None else current.attempt + 1


def _describe_attempt(entry: VideoMetadata | None) -> str:
    if entry is None:
        return "there is no such entry"
    if entry.attempt is None:
        return f"the entry is {entry.status}" + (
            ", by an attempt started in format 1" if entry.status == "generating" else ""
        )
    if entry.status == "generating":
        return f"attempt {entry.attempt} is running"
    if entry.status == "pending":
        return f"the entry is pending; its last attempt was {entry.attempt}"
    return f"the entry is {entry.status}, ended by attempt {entry.attempt}"


def check_entry(entry: VideoMetadata) -> None:
    """Raise :class:`InvalidEntryError` if ``entry`` breaks a rule on its own: ``ready`` needs
    ``localPath``, ``failed`` needs ``error``, ``error`` only on ``failed``."""
    where = f"{entry.spot_id}/{entry.era_id}"
    if entry.error is not None and entry.status != "failed":
        raise InvalidEntryError(f"{where}: error is only allowed on a failed entry, not on {entry.status}")
    if entry.status == "ready" and entry.local_path is None:
        raise InvalidEntryError(f"{where}: a ready entry needs localPath")
    if entry.status == "failed" and entry.error is None:
        raise InvalidEntryError(f"{where}: a failed entry needs an error message")


def _same_state(current: VideoMetadata, desired: VideoMetadata) -> bool:
    """Whether ``desired`` asks for nothing new (its timestamps are the ledger's and do not count)."""
    if desired.prompt != current.prompt:
        return False
    if current.status == "failed":
        return desired.error == current.error and desired.local_path in (None, current.local_path)
    return desired.local_path == current.local_path
