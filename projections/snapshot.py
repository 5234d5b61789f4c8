"""The snapshot ``generated-videos.json`` and its checkpoint: the edge where the entries view meets the disk.

The snapshot is the JSON array the app reads: entries ordered by ``(spotId, eraId)``, one per line,
UTF-8, ending in a newline, byte-identical for the same log. It is replaced atomically
(:func:`ledger.fileops.atomic_write`). The checkpoint ``checkpoint.json`` beside the log records which log
position the snapshot reflects and the snapshot's SHA-256 and size, so a crash between writing the two is
detected (the digests disagree) and the snapshot is then rebuilt from the log rather than trusted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec

from ledger.events import FORMAT_VERSION, VideoMetadata
from ledger.fileops import FileOps, atomic_write, temp_files
from ledger.log import Position
from projections import entries as entries_view  # a module import: safe whichever is imported first

__all__ = (
    "Checkpoint",
    "SnapshotLoad",
    "encode_snapshot",
    "load_snapshot",
    "read_checkpoint",
    "remove_temp_files",
    "snapshot_is_current",
    "write_snapshot",
)

_encoder = msgspec.json.Encoder()
_entries_decoder = msgspec.json.Decoder(list[VideoMetadata])


class Checkpoint(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """How far into the log the snapshot reaches, bound to the snapshot's bytes."""

    v: int
    seq: int
    offset: int
    last_hash: str
    last_ts: str
    snapshot: str
    """Absolute path of the snapshot this checkpoint describes."""
    snapshot_size: int
    snapshot_sha256: str

    @property
    def position(self) -> Position:
        return Position(self.offset, self.seq, self.last_hash, self.last_ts)


_checkpoint_decoder = msgspec.json.Decoder(Checkpoint)


def encode_snapshot(entries: entries_view.Entries) -> bytes:
    """The snapshot's bytes: ``[]`` or ``[\\n{entry},\\n{entry}\\n]``, then a newline."""
    if not entries:
        return b"[]\n"
    body = _encoder.encode([entries[key] for key in sorted(entries)])
    # One entry per line. '},{"spotId"' cannot occur inside a JSON string (its quote would be escaped).
    return b"[\n" + body[1:-1].replace(b'},{"spotId"', b'},\n{"spotId"') + b"\n]\n"


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or ``None`` if it is missing or unreadable (then nothing is trusted)."""
    try:
        return _checkpoint_decoder.decode(path.read_bytes())
    except (OSError, msgspec.MsgspecError, UnicodeDecodeError):
        return None


class SnapshotLoad(msgspec.Struct, frozen=True):
    """The outcome of :func:`load_snapshot`: the entries, or why the snapshot cannot be used."""

    entries: entries_view.Entries | None
    problem: str | None = None


def load_snapshot(path: Path, checkpoint: Checkpoint) -> SnapshotLoad:
    """The entries in the snapshot at ``path`` if it is exactly the one ``checkpoint`` describes."""
    if checkpoint.v != FORMAT_VERSION or checkpoint.snapshot != str(path.absolute()):
        return SnapshotLoad(None, "the checkpoint describes another snapshot")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return SnapshotLoad(None, "it is missing")
    except OSError as exc:
        return SnapshotLoad(None, f"it cannot be read ({exc.strerror})")
    try:
        items = _entries_decoder.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        return SnapshotLoad(None, f"it is not a valid JSON array of entries ({exc})")
    if (
        len(data) != checkpoint.snapshot_size
        or hashlib.sha256(data).hexdigest() != checkpoint.snapshot_sha256
    ):
        return SnapshotLoad(
            None, "it does not match its checkpoint (changed, or a crash came between the two)"
        )
    return SnapshotLoad({item.key: item for item in items})


def remove_temp_files(ops: FileOps, *targets: Path) -> None:
    """Remove temp files an interrupted write of ``targets`` left. Call with the projection lock held."""
    for target in targets:
        for temp in temp_files(target):
            try:
                ops.unlink(temp)
            except FileNotFoundError:
                pass


def write_snapshot(
    ops: FileOps, path: Path, checkpoint_path: Path, data: bytes, position: Position
) -> Checkpoint:
    """Write the snapshot ``data`` (:func:`encode_snapshot` of the state at ``position``), then its
    checkpoint, both atomically."""
    atomic_write(ops, path, data, label="snapshot")
    checkpoint = Checkpoint(
        v=FORMAT_VERSION,
        seq=position.seq,
        offset=position.offset,
        last_hash=position.last_hash,
        last_ts=position.last_ts,
        snapshot=str(path.absolute()),
        snapshot_size=len(data),
        snapshot_sha256=hashlib.sha256(data).hexdigest(),
    )
    # The checkpoint is a cache, checked against the snapshot and the log whenever it is read: losing it,
    # or finding it stale or unreadable after a power loss, costs one replay and nothing else.
    atomic_write(ops, checkpoint_path, _encoder.encode(checkpoint) + b"\n", label="checkpoint", durable=False)
    return checkpoint


def snapshot_is_current(path: Path, checkpoint: Checkpoint | None, seq: int) -> bool:
    """Cheap check that the snapshot on disk already shows event ``seq``: its checkpoint is at or past it
    and the file has the recorded size."""
    if checkpoint is None or checkpoint.seq < seq or checkpoint.snapshot != str(path.absolute()):
        return False
    try:
        return os.stat(path).st_size == checkpoint.snapshot_size
    except OSError:
        return False
