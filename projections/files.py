"""The files view: for each entry that is ready, the ``ready`` event that made it so (path, size, digest).

``verify --files`` checks the files on disk against it. Like every view, a pure fold over the events.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.events import EventType, Ready

__all__ = ("ReadyFiles", "apply", "fold")

ReadyFiles = dict[tuple[str, str], Ready]


def apply(files: ReadyFiles, event: EventType) -> None:
    """Record ``event``: a ``ready`` event becomes the entry's file; any other event leaves it not ready."""
    if isinstance(event, Ready):
        files[event.key] = event
    else:
        files.pop(event.key, None)


def fold(events: Iterable[EventType], files: ReadyFiles | None = None) -> ReadyFiles:
    state: ReadyFiles = {} if files is None else files
    for event in events:
        apply(state, event)
    return state
