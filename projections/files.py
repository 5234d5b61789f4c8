"""The files view: for each entry that is ready, the ``ready`` event that made it so (path, size, digest).

``verify --files`` checks the files on disk against it. Like every view, a pure fold over the events.
"""

from __future__ import annotations

from ledger.events import EventType, Ready

__all__ = ("ReadyFiles", "note")

ReadyFiles = dict[tuple[str, str], Ready]


def note(files: ReadyFiles, event: EventType) -> None:
    """Record ``event``: a ``ready`` event becomes the entry's file; any other event leaves it not ready."""
    if isinstance(event, Ready):
        files[event.key] = event
    else:
        files.pop(event.key, None)
