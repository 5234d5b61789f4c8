"""The ledger's exceptions: one base class, a few specific ones.

Every error the ledger raises on purpose derives from :class:`LedgerError`, so a caller can catch "anything
the ledger refused or could not do" in one place. Each message says what was wrong and where.
"""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = (
    "AlreadyReadyError",
    "AttemptInProgressError",
    "ClockSkewError",
    "ConflictError",
    "CorruptLogError",
    "DurabilityError",
    "EntryNotFoundError",
    "IllegalTransitionError",
    "InvalidEntryError",
    "LedgerClosedError",
    "LedgerError",
    "LedgerIOError",
    "MissingExtraError",
    "NoLedgerError",
    "NoteError",
    "ProofError",
    "ReadOnlyLedgerError",
    "SigningUnavailableError",
    "SnapshotUpdateError",
    "StaleHeadError",
    "UnimportedSnapshotError",
    "io_error",
    "symlink_refused",
)


class LedgerError(Exception):
    """Base class of every error the ledger raises."""


class InvalidEntryError(LedgerError, ValueError):
    """An entry or argument failed validation (wrong type, empty id, unknown status, too long, ...).

    Nothing was written.
    """


class IllegalTransitionError(LedgerError):
    """The change is not allowed by the lifecycle (for instance ``pending`` straight to ``ready``).

    Nothing was written. ``current`` is the entry's status before the change (``None`` for a new entry).
    """

    def __init__(self, message: str, *, current: str | None, requested: str) -> None:
        super().__init__(message)
        self.current = current
        self.requested = requested


class AttemptInProgressError(IllegalTransitionError):
    """A new attempt was asked for (``generation()``) while another attempt on the entry is live.

    Nothing was written. ``attempt`` is the live attempt's number (``None`` for one started in format 1)
    and ``since`` its start time. A worker that
    knows the attempt is abandoned takes it over explicitly (``generation(..., takeover=attempt)``), or
    ends it first (``reap``, ``mark_video_failed``).
    """

    def __init__(self, message: str, *, attempt: int | None, since: str | None) -> None:
        super().__init__(message, current="generating", requested="generating")
        self.attempt = attempt
        self.since = since


class AlreadyReadyError(IllegalTransitionError):
    """A new attempt was asked for (``generation()``) on an entry that is already ``ready``: its video
    exists. Nothing was written. Pass ``regenerate=True`` to make it again. ``attempt`` is the attempt that
    made it."""

    def __init__(self, message: str, *, attempt: int | None) -> None:
        super().__init__(message, current="ready", requested="generating")
        self.attempt = attempt


class ClockSkewError(LedgerError):
    """This writer's clock reads more than :data:`~ledger.store.MAX_CLOCK_LEAD` after the log's last event.

    Nothing was written. Either this clock is wrong, or the ledger was idle for that long; an event's time
    would move every later event's time with it (times never go backwards), so it is refused unless the
    handle was opened with ``force_clock=True`` (CLI: ``--force-clock``). ``clock`` is this writer's
    reading, ``last`` the last event's time and ``seq`` its number.
    """

    def __init__(self, message: str, *, clock: str, last: str, seq: int) -> None:
        super().__init__(message)
        self.clock = clock
        self.last = last
        self.seq = seq


class EntryNotFoundError(LedgerError, LookupError):
    """No entry exists for this ``(spotId, eraId)``."""


class CorruptLogError(LedgerError):
    """The log holds a line that is damaged or out of place and is followed by valid lines.

    This is never repaired silently: a damaged line in the middle of the log cannot be told apart from
    tampering. ``line`` is the 1-based line number in ``path``.
    """

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}: line {line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class ConflictError(LedgerError):
    """An append wrote nothing because the records its plan was shown were not recorded after all (another
    writer's group commit failed): read again and plan again (:meth:`ledger.backend.EventStore.append`)."""


class StaleHeadError(ConflictError):
    """A head given to :meth:`~ledger.backend.EventStore.read` or :meth:`~ledger.backend.EventStore.append`
    is no place in the store any more (it holds fewer records, or its file was replaced since the head was
    read): whatever was built on that head is stale; read again from the start (or a checkpoint)."""


class LedgerIOError(LedgerError, OSError):
    """A file operation failed (disk full, permission denied, I/O error, ...).

    The event being written was not acknowledged. Unless a :class:`DurabilityError` was raised, the
    ledger handle stays usable and the log holds only complete events. ``errno`` is the cause's.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


class DurabilityError(LedgerIOError):
    """``fsync`` failed: the event was not acknowledged and this handle refuses further writes.

    A failed fsync is never retried (the kernel may have dropped the dirty pages and a second fsync can
    report success for data that never reached the disk). Open a new :class:`~ledger.Ledger` once the
    cause is fixed; it reads the log from disk again. See ``docs/guarantees.md``.
    """


class SnapshotUpdateError(LedgerIOError):
    """The event was recorded (it is in the log, fsynced) but the snapshot could not be brought up to date.

    Retrying the same call is safe: it records nothing more and projects again. ``video-ledger rebuild``
    does the same from the command line. ``seq`` is the recorded event's number.
    """

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class LedgerClosedError(LedgerError):
    """The handle was closed, or poisoned by an earlier :class:`DurabilityError`."""


class ReadOnlyLedgerError(LedgerError):
    """A write was attempted on a ledger opened with ``readonly=True``."""


class NoLedgerError(LedgerError):
    """A read-only open found no ledger (no ``events.jsonl``) in the directory: nothing was created."""


class UnimportedSnapshotError(LedgerError):
    """The snapshot holds entries the log does not (the app's own ``generated-videos.json`` before it was
    imported): it is not overwritten. Import it first (``Ledger.import_entries`` or ``video-ledger
    import``); nothing was written."""


class ProofError(LedgerError):
    """A Merkle proof, a proof bundle or a log's tree does not check: the claim it makes is not shown
    (an inclusion or consistency proof that does not lead to the signed root, a line that is not the leaf
    it names, a log that does not extend an older signed tree). Nothing was written."""


class NoteError(LedgerError):
    """A signed note, checkpoint or key is malformed, or carries no valid signature by the key it is
    checked with. Nothing was written."""


class MissingExtraError(LedgerError):
    """What was asked for needs an optional extra that is not installed (the PostgreSQL store: psycopg;
    the disclosure inside the file: c2pa-python). Nothing was opened or changed; the message says what to
    install."""


class SigningUnavailableError(LedgerError):
    """Signing or checking a note needs the ``cryptography`` package (Ed25519), which is not installed:
    ``pip install 'video-ledger[sign]'``."""


SYMLINK_REFUSED = "it is a symbolic link (refused; pass follow_symlinks=True to allow it)"
"""Why a ledger file that is a symbolic link was refused, in a library user's words: the error carries
``errno.ELOOP``, so a front end (the CLI) can say it in its own."""


def symlink_refused(action: str, path: Path) -> LedgerIOError:
    """The :class:`LedgerIOError` refusing ``path`` because it is a symbolic link (``errno.ELOOP``)."""
    return io_error(action, path, OSError(errno.ELOOP, SYMLINK_REFUSED))


def io_error(action: str, path: Path, exc: OSError) -> LedgerIOError:
    """A :class:`LedgerIOError` saying what was being done to which file, keeping ``errno``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = SYMLINK_REFUSED
    err = LedgerIOError(f"cannot {action} {path}: {reason}")
    err.errno = exc.errno
    err.filename = str(path)
    return err
