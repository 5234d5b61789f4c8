"""video-ledger: a durable, append-only, hash-chained record of what a video generation pipeline made.

Every status change of an entry is one fsynced JSON line in ``events.jsonl``; the projector folds the log
into ``generated-videos.json``, the JSON array the app reads. See ``docs/`` for the format, the lifecycle
and the guarantees.

Each public name is imported on first use (:pep:`562`): ``from ledger import Ledger`` imports the store
API and what it uses, and ``import ledger`` alone imports nothing more, so a short command pays only for
the rooms it needs.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ledger.audit import VerifyReport
    from ledger.default import (
        claim,
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

# the module each public name comes from, as imported above for the type checker
# (tests/test_start.py::test_each_public_name_comes_lazily_from_the_module_the_type_checker_reads checks that
# the two agree, and that __all__ names each)
_WHERE: _typing.Final[dict[str, str]] = {
    name: module
    for module, names in {
        "ledger.audit": ("VerifyReport",),
        "ledger.default": (
            "claim",
            "default_ledger",
            "generate_and_store_video",
            "generation",
            "get_all_video_metadata",
            "get_video_metadata",
            "history",
            "mark_video_failed",
            "mark_video_ready",
            "reap",
            "rebuild",
            "set_video_metadata",
            "verify",
        ),
        "ledger.errors": (
            "AlreadyReadyError",
            "AttemptInProgressError",
            "ClockSkewError",
            "CorruptLogError",
            "DurabilityError",
            "EntryNotFoundError",
            "IllegalTransitionError",
            "InvalidEntryError",
            "LedgerClosedError",
            "LedgerError",
            "LedgerIOError",
            "NoLedgerError",
            "ReadOnlyLedgerError",
            "SnapshotUpdateError",
            "UnimportedSnapshotError",
        ),
        "ledger.events": (
            "STATUSES",
            "Event",
            "EventType",
            "Failed",
            "Generating",
            "Imported",
            "Pending",
            "Policy",
            "Ready",
            "Renewed",
            "Status",
            "VideoMetadata",
            "Worker",
        ),
        "ledger.importing": ("ImportFile", "ImportReport", "read_import"),
        "ledger.lifecycle": ("TRANSITIONS",),
        "ledger.media": ("FilesReport",),
        "ledger.pipeline": ("Job", "Terminated"),
        "ledger.retry": ("DEFAULT_POLICY", "RetryPolicy"),
        "ledger.store": ("Ledger", "RebuildReport"),
    }.items()
    for name in names
}

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
    "claim",
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


if not _typing.TYPE_CHECKING:  # the type checker reads the imports above; an unknown name stays an error

    def __getattr__(name: str) -> object:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value  # asked for once: later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
