"""video-ledger: a durable, append-only, hash-chained record of what a video generation pipeline made.

Every status change of an entry is one fsynced JSON line in ``events.jsonl``; the projector folds the log
into ``generated-videos.json``, the JSON array the app reads. See ``docs/`` for the format, the lifecycle
and the guarantees.
"""

from ledger.audit import VerifyReport
from ledger.default import (
    default_ledger,
    generate_and_store_video,
    generation,
    get_all_video_metadata,
    get_video_metadata,
    history,
    mark_video_failed,
    mark_video_ready,
    reap,
    rebuild,
    set_video_metadata,
    verify,
)
from ledger.errors import (
    AlreadyReadyError,
    AttemptInProgressError,
    ClockSkewError,
    CorruptLogError,
    DurabilityError,
    EntryNotFoundError,
    IllegalTransitionError,
    InvalidEntryError,
    LedgerClosedError,
    LedgerError,
    LedgerIOError,
    NoLedgerError,
    ReadOnlyLedgerError,
    SnapshotUpdateError,
    UnimportedSnapshotError,
)
from ledger.events import (
    STATUSES,
    Event,
    EventType,
    Failed,
    Generating,
    Imported,
    Pending,
    Policy,
    Ready,
    Renewed,
    Status,
    VideoMetadata,
    Worker,
)
from ledger.importing import ImportFile, ImportReport, read_import
from ledger.lifecycle import TRANSITIONS
from ledger.media import FilesReport
from ledger.pipeline import Job, Terminated
from ledger.retry import DEFAULT_POLICY, RetryPolicy
from ledger.store import Ledger, RebuildReport

__all__ = (
    "DEFAULT_POLICY",
    "STATUSES",
    "TRANSITIONS",
    "AlreadyReadyError",
    "AttemptInProgressError",
    "ClockSkewError",
    "CorruptLogError",
    "DurabilityError",
    "EntryNotFoundError",
    "Event",
    "EventType",
    "Failed",
    "FilesReport",
    "Generating",
    "IllegalTransitionError",
    "ImportFile",
    "ImportReport",
    "Imported",
    "InvalidEntryError",
    "Job",
    "Ledger",
    "LedgerClosedError",
    "LedgerError",
    "LedgerIOError",
    "NoLedgerError",
    "Pending",
    "Policy",
    "ReadOnlyLedgerError",
    "Ready",
    "RebuildReport",
    "Renewed",
    "RetryPolicy",
    "SnapshotUpdateError",
    "Status",
    "Terminated",
    "UnimportedSnapshotError",
    "VerifyReport",
    "VideoMetadata",
    "Worker",
    "default_ledger",
    "generate_and_store_video",
    "generation",
    "get_all_video_metadata",
    "get_video_metadata",
    "history",
    "mark_video_failed",
    "mark_video_ready",
    "read_import",
    "reap",
    "rebuild",
    "set_video_metadata",
    "verify",
)

__version__ = "0.1.0"
