"""The history view: which events a reader asked for, one filter for ``history`` and ``follow`` alike.

:func:`event_filter` builds the filter from what a caller gives (ids, a ``seq`` to start after, a time
range, a status, an event type); :meth:`EventFilter.matches` says whether an event passes, and
:meth:`EventFilter.past` whether no later event can (times never go backwards in a log).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypedDict, TypeVar

from ledger.events import EventType, normalize_id, parse_time

__all__ = ("EventFilter", "HistoryFilters", "event_filter", "filtered")

_Item = TypeVar("_Item", bound=tuple[bytes, EventType])


class HistoryFilters(TypedDict, total=False):
    """The filters a reader may give besides the entry."""

    since_seq: int | None
    since: str | dt.datetime | None
    until: str | dt.datetime | None
    status: str | None
    type: str | None


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
    """Only events that leave an entry with this status."""
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
            and (self.status is None or event.new_status == self.status)
            and (self.type is None or event.type == self.type)
        )

    def past(self, event: EventType) -> bool:
        """Whether ``event`` is after the time range, so that no later event of the log can pass."""
        return self.high is not None and event.ts > self.high


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
