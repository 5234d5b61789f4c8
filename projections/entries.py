"""The entries view: fold events into the current :class:`~ledger.events.VideoMetadata` of each entry.

``apply(entry, event)`` is pure: the entry before (``None`` for a new one) and an event give the entry
after. What each event does to an entry (``docs/lifecycle.md``):

- ``pending`` / ``generating``: sets status, prompt and localPath; clears completedAt and error.
- ``ready``: sets status and localPath, completedAt to the event's time; clears error.
- ``failed``: sets status and error, completedAt to the event's time; keeps prompt and localPath.
- ``imported``: sets every field as the imported entry had it, timestamps included.
- ``createdAt`` is the time of the entry's first event and never changes; ``updatedAt`` is the time of its
  last event.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.events import EventType, Failed, Generating, Imported, Pending, Ready, VideoMetadata

__all__ = ("Entries", "apply", "as_of", "fold")

Entries = dict[tuple[str, str], VideoMetadata]
"""The state of the entries view: each entry by ``(spotId, eraId)``."""


def apply(entry: VideoMetadata | None, event: EventType) -> VideoMetadata:
    """The entry after ``event``."""
    created = event.ts if entry is None else entry.created_at
    match event:
        case Pending() | Generating():
            return VideoMetadata(
                spot_id=event.spot_id,
                era_id=event.era_id,
                prompt=event.prompt,
                local_path=event.local_path,
                status=event.STATUS,
                created_at=created,
                updated_at=event.ts,
            )
        case Ready():
            return VideoMetadata(
                spot_id=event.spot_id,
                era_id=event.era_id,
                prompt="" if entry is None else entry.prompt,
                local_path=event.local_path,
                status="ready",
                created_at=created,
                completed_at=event.ts,
                updated_at=event.ts,
            )
        case Failed():
            return VideoMetadata(
                spot_id=event.spot_id,
                era_id=event.era_id,
                prompt="" if entry is None else entry.prompt,
                local_path=None if entry is None else entry.local_path,
                status="failed",
                created_at=created,
                completed_at=event.ts,
                error=event.error,
                updated_at=event.ts,
            )
        case Imported():
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


def fold(events: Iterable[EventType], state: Entries | None = None) -> Entries:
    """Apply ``events`` in order to ``state`` (a new empty state by default) and return it."""
    entries: Entries = {} if state is None else state
    get = entries.get
    for event in events:
        key = (event.spot_id, event.era_id)
        entries[key] = apply(get(key), event)
    return entries


def as_of(events: Iterable[EventType], *, seq: int | None = None, ts: str | None = None) -> Entries:
    """The entries as they stood after event ``seq`` and/or at time ``ts`` (events at exactly that seq or
    time included). Stops reading at the first later event: the log is in seq order and time never goes
    backwards in it."""
    entries: Entries = {}
    for event in events:
        if (seq is not None and event.seq > seq) or (ts is not None and event.ts > ts):
            break
        key = (event.spot_id, event.era_id)
        entries[key] = apply(entries.get(key), event)
    return entries
