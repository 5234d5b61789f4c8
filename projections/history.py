"""The history view: which events a reader asked for, one filter for ``history`` and ``follow`` alike.

:func:`event_filter` builds the filter from what a caller gives (ids, a ``seq`` to start after, a time
range, a status, an event type); :meth:`EventFilter.matches` says whether an event passes, and
:meth:`EventFilter.past` whether no later event can (times never go backwards in a log), and
:meth:`EventFilter.before` whether no earlier one can. :func:`filtered` takes the events oldest first,
:func:`latest` newest first (the last ``n``, in either order).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypedDict, TypeVar, Unpack, cast

from ledger.events import EventType, Policy, normalize_id, parse_time

__all__ = (
    "EventFilter",
    "HistoryFilters",
    "HistoryOptions",
    "Reads",
    "event_filter",
    "filtered",
    "history",
    "latest",
)

_Item = TypeVar("_Item", bound=tuple[bytes, EventType])


class HistoryFilters(TypedDict, total=False):
    """The filters a reader may give besides the entry."""

    since_seq: int | None
    since: str | dt.datetime | None
    until: str | dt.datetime | None
    status: str | None
    type: str | None


class HistoryOptions(HistoryFilters, total=False):
    """The filters, and which of the events that pass a reader wants and in what order."""

    last: int | None
    """Only the last this many (``None``: all)."""
    reverse: bool
    """Newest first."""


class Reads(Protocol):
    """What the history reads of a store (:class:`~ledger.backend.EventStore` has both)."""

    def lines_of(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]: ...

    def newest_first(
        self, spot_id: str | None = None, era_id: str | None = None
    ) -> Iterator[tuple[bytes, EventType]]: ...


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The events a reader asked for; every field ``None`` passes every event."""

    spot_id: str | None = None
    """In NFC, as ids are stored."""
    era_id: str | None = None
    since_seq: int | None = None
    """Only events after this one."""
    low: str | None = None
    """Only events at or after this time (as the log writes times)."""
    high: str | None = None
    """Only events at or before this time."""
    status: str | None = None
    """Only events that leave an entry with this status (a policy event is no entry's)."""
    type: str | None = None
    """Only events of this type (``pending`` ... ``imported``)."""

    def matches(self, event: EventType) -> bool:
        """Whether ``event`` passes every filter."""
        return (
            (self.spot_id is None or event.spot_id == self.spot_id)
            and (self.era_id is None or event.era_id == self.era_id)
            and (self.since_seq is None or event.seq > self.since_seq)
            and (self.low is None or event.ts >= self.low)
            and (self.high is None or event.ts <= self.high)
            and (self.status is None or (event.new_status == self.status and not isinstance(event, Policy)))
            and (self.type is None or event.type == self.type)
        )

    def past(self, event: EventType) -> bool:
        """Whether ``event`` is after the time range, so that no later event of the log can pass."""
        return self.high is not None and event.ts > self.high

    def before(self, event: EventType) -> bool:
        """Whether ``event`` is before the time range or at or before ``since_seq``, so that no earlier
        event of the log can pass."""
        return (self.low is not None and event.ts < self.low) or (
            self.since_seq is not None and event.seq <= self.since_seq
        )


def event_filter(
    spot_id: str | None = None,
    era_id: str | None = None,
    *,
    since_seq: int | None = None,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    status: str | None = None,
    type: str | None = None,
) -> EventFilter:
    """The filter for one spot's, one era's or one entry's events (ids in any Unicode form: compared in
    NFC), after event ``since_seq``, between the times ``since`` and ``until`` (both included), that leave
    an entry with ``status``, of event ``type``. A time that cannot be read raises
    :class:`~ledger.errors.InvalidEntryError`."""
    return EventFilter(
        spot_id=None if spot_id is None else normalize_id(spot_id),
        era_id=None if era_id is None else normalize_id(era_id),
        since_seq=since_seq,
        low=None if since is None else parse_time(since),
        high=None if until is None else parse_time(until),
        status=status,
        type=type,
    )


def filtered(items: Iterable[_Item], wanted: EventFilter, *, ends: bool = True) -> Iterator[_Item]:
    """The ``(line, event)`` items that pass ``wanted``, in order. ``ends``: stop at the first event past
    the time range (a log's history); a follower's stream goes on."""
    for item in items:
        event = item[1]
        if ends and wanted.past(event):
            return
        if wanted.matches(event):
            yield item


def history(
    store: Reads, spot_id: str | None = None, era_id: str | None = None, **options: Unpack[HistoryOptions]
) -> Iterator[tuple[bytes, EventType]]:
    """The ``(line, event)`` items of ``store`` that pass the filters :func:`event_filter` builds from the
    ids and ``options``: read forward (:func:`filtered`), or with ``last`` or ``reverse`` from the end
    (:func:`latest`)."""
    last, reverse = options.pop("last", None), options.pop("reverse", False)
    wanted = event_filter(spot_id, era_id, **cast("HistoryFilters", options))  # the two popped
    if last is None and not reverse:
        return filtered(store.lines_of(wanted.spot_id, wanted.era_id), wanted)
    return latest(store.newest_first(wanted.spot_id, wanted.era_id), wanted, last=last, reverse=reverse)


def latest(
    items: Iterable[_Item], wanted: EventFilter, *, last: int | None = None, reverse: bool = False
) -> Iterator[_Item]:
    """From ``items`` given newest first (:meth:`~ledger.backend.EventStore.newest_first`), the ones that
    pass ``wanted``: the last ``last`` of them (all if ``None``), newest first if ``reverse``, else in log
    order. Taking stops at the ``last``-th, or at the first event before the range: the rest of the log
    is never read."""
    newest = _passing_backward(items, wanted)
    if last is not None:
        newest = itertools.islice(newest, last)
    if reverse:
        return newest
    return reversed(list(newest))  # the last ``last``: held, then given oldest first


def _passing_backward(items: Iterable[_Item], wanted: EventFilter) -> Iterator[_Item]:
    for item in items:
        event = item[1]
        if wanted.before(event):
            return
        if wanted.matches(event):
            yield item
