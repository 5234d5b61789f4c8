"""video-ledger: a durable, append-only, hash-chained record of what a video generation pipeline made.

Every status change of an entry is one fsynced JSON line in ``events.jsonl``; the projector folds the log
into ``generated-videos.json``, the JSON array the app reads. See ``docs/`` for the format, the lifecycle
and the guarantees.
"""

from ledger.errors import (
    CorruptLogError,
    DurabilityError,
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    LedgerClosedError,
    LedgerError,
    LedgerIOError,
    ReadOnlyLedgerError,
    SnapshotUpdateError,
)
from ledger.events import (
    STATUSES,
    Event,
    EventType,
    Failed,
    Generating,
    Pending,
    Ready,
    Status,
    VideoMetadata,
)
from ledger.lifecycle import TRANSITIONS
from ledger.store import (
    Ledger,
    RebuildReport,
    VerifyReport,
    default_ledger,
    get_all_video_metadata,
    get_video_metadata,
    history,
    mark_video_failed,
    rebuild,
    set_video_metadata,
    verify,
)

__all__ = (
    "STATUSES",
    "TRANSITIONS",
    "CorruptLogError",
    "DurabilityError",
    "EntryNotFoundError",
    "Event",
    "EventType",
    "Failed",
    "Generating",
    "IllegalTransitionError",
    "InvalidEntryError",
    "Ledger",
    "LedgerClosedError",
    "LedgerError",
    "LedgerIOError",
    "Pending",
    "ReadOnlyLedgerError",
    "Ready",
    "RebuildReport",
    "SnapshotUpdateError",
    "Status",
    "VerifyReport",
    "VideoMetadata",
    "default_ledger",
    "get_all_video_metadata",
    "get_video_metadata",
    "history",
    "mark_video_failed",
    "rebuild",
    "set_video_metadata",
    "verify",
)

__version__ = "0.1.0"
