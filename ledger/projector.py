"""The snapshot ``generated-videos.json`` and its checkpoint: the edge where the entries view meets the disk.

The snapshot is the JSON array the app reads: entries ordered by ``(spotId, eraId)``, one per line,
UTF-8, ending in a newline, byte-identical for the same log. It is replaced atomically
(:func:`ledger.fileops.atomic_write`). The checkpoint ``checkpoint.json`` beside the log records which log
position the snapshot reflects and the snapshot's CRC-32 and size, so a crash between writing the two is
detected (the digests disagree) and the snapshot is then rebuilt from the log rather than trusted.

The projector reads the store through the event-store interface only (:mod:`ledger.backend`); the state it
writes is the write model (:mod:`ledger.model`) the store API shares.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import itertools
import logging
import operator
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from ledger.backend import GENESIS, EventStore, Head
from ledger.errors import (
    CorruptLogError,
    LedgerIOError,
    StaleHeadError,
    UnimportedSnapshotError,
    io_error,
    symlink_refused,
)
from ledger.events import FORMAT_VERSION, EventType, VideoMetadata, crc32, line_hash, normalize_id
from ledger.fileops import TEMP_MARK, FileLock, FileOps, atomic_write, file_kind, temp_files
from ledger.model import Model
from ledger.tree import TreeFile
from projections import entries as entries_view

__all__ = (
    "PAIR_TRIES",
    "Checkpoint",
    "Projector",
    "SnapshotLoad",
    "decode_snapshot",
    "describes",
    "encode_entries",
    "encode_snapshot",
    "holds",
    "keep_replaced",
    "load_snapshot",
    "read_checkpoint",
    "read_pair",
    "read_untrusted",
    "remove_temp_files",
    "save_entries",
    "snapshot_is_current",
    "snapshot_ref",
    "unimported_error",
    "untrusted_keys",
    "write_snapshot",
)

log = logging.getLogger("ledger")

_encoder = msgspec.json.Encoder()
_entries_decoder = msgspec.json.Decoder(list[VideoMetadata])
_plain_ops = FileOps()

_warned: set[tuple[str, str]] = set()

MAX_CHECKPOINT_BYTES = 1 << 16
"""A checkpoint is a few hundred bytes (its longest member is the snapshot's path); a larger file is not
one."""

MAX_SNAPSHOT_BYTES = 1 << 32
"""The most of a snapshot that no checkpoint vouches for (the app's own file, say) is read: 4 GiB, as an
import (a larger one is refused, not read without end)."""


class Checkpoint(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """How far into the log the snapshot reaches, bound to the snapshot's bytes."""

    v: int
    seq: int
    offset: int
    """The store's bookmark after record ``seq`` (:attr:`ledger.backend.Head.at`: the file backend's byte
    offset after its line; the memory and PostgreSQL stores': the seq). A hint the store checks."""
    last_hash: str
    last_ts: str
    snapshot: str
    """The snapshot this checkpoint describes: its file name when it is in the ledger directory, else its
    absolute path (:func:`snapshot_ref`)."""
    snapshot_size: int
    snapshot_crc32: str
    """CRC-32 of the snapshot's bytes, 8 lowercase hex digits (as a log line's ``crc``)."""

    @property
    def head(self) -> Head:
        """The place it names: ``offset`` is the store's bookmark there (the file backend's byte offset)."""
        return Head(self.seq, self.last_hash, self.last_ts, self.offset)


_checkpoint_decoder = msgspec.json.Decoder(Checkpoint)

Runs = Iterator[list[EventType]]
"""The events of a store in runs (a batch's events each), as :meth:`Projector.rebuild` replays them."""

PAIR_TRIES = 30
"""How often an open reads the snapshot and checkpoint again while a projector is between its renames
(waiting 1 ms, doubling up to 50 ms: about 1.3 s in all)."""

REPLACED_MARK = ".replaced-"
"""A snapshot that no checkpoint vouched for is kept as ``<snapshot>.replaced-<digest>`` before it is
replaced."""


def _crc32(data: bytes | bytearray) -> str:
    # A checksum, not a seal: the checkpoint is a cache that any writer may rewrite, so it guards against
    # accidents (a crash between the two renames, an edit), at a fraction of SHA-256's cost
    # (docs/performance.md, *The checkpoint binds the snapshot by CRC-32 and size*).
    return f"{crc32(data):08x}"


def encode_snapshot(entries: entries_view.Entries) -> bytes:
    """The snapshot's bytes: ``[]`` or ``[\\n{entry},\\n{entry}\\n]``, then a newline."""
    if not entries:
        return b"[]\n"
    body = _encoder.encode([entries[key] for key in sorted(entries)])
    # One entry per line. '},{"spotId"' cannot occur inside a JSON string (its quote would be escaped).
    return b"[\n" + body[1:-1].replace(b'},{"spotId"', b'},\n{"spotId"') + b"\n]\n"


def encode_entries(entries: Iterable[VideoMetadata]) -> bytes:
    """``entries`` in the snapshot's format (the bytes of ``generated-videos.json`` holding them)."""
    return encode_snapshot({e.key: e for e in entries})


def save_entries(path: str | os.PathLike[str], entries: Iterable[VideoMetadata]) -> None:
    """Write ``entries`` in the snapshot's format to ``path`` by atomic replace (fsynced)."""
    target = Path(path)
    try:
        atomic_write(_plain_ops, target, encode_entries(entries), label="output")
    except OSError as exc:
        raise io_error("write", target, exc) from None


def snapshot_ref(snapshot: Path, checkpoint: Path) -> str:
    """How a checkpoint names its snapshot: just the file name when both are in the ledger directory (so a
    copied or moved ledger keeps its checkpoint), else the absolute path."""
    snapshot, checkpoint = snapshot.absolute(), checkpoint.absolute()
    if snapshot.parent == checkpoint.parent:
        return snapshot.name
    try:  # the same directory spelled another way (``..``, a symbolic link)
        same = os.path.samefile(snapshot.parent, checkpoint.parent)
    except OSError:
        same = os.path.normpath(snapshot.parent) == os.path.normpath(checkpoint.parent)
    return snapshot.name if same else str(snapshot)


def read_checkpoint(path: Path, ops: FileOps = _plain_ops) -> Checkpoint | None:
    """The checkpoint at ``path``, or ``None`` if it is missing or unreadable (then nothing is trusted).

    It is a cache: a FIFO, a device, a symbolic link or an oversized file in its place is ignored with a
    warning (never read: that could block or never end), and the next snapshot write replaces it."""
    try:
        data = ops.read_regular(path, MAX_CHECKPOINT_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = "it is a symbolic link (refused)" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        if (str(path), reason) not in _warned:  # once per process: readers such as `wait` look often
            _warned.add((str(path), reason))
            log.warning("%s: %s; ignored (a cache: the next snapshot write replaces it)", path, reason)
        return None
    try:
        return _checkpoint_decoder.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None


class SnapshotLoad(msgspec.Struct, frozen=True):
    """The outcome of :func:`load_snapshot`: the entries, or why the snapshot cannot be used."""

    entries: entries_view.Entries | None
    problem: str | None = None


def load_snapshot(path: Path, checkpoint: Checkpoint, ref: str, ops: FileOps = _plain_ops) -> SnapshotLoad:
    """The entries in the snapshot at ``path`` (named ``ref``) if it is exactly the one ``checkpoint``
    describes (no more than its recorded size is read)."""
    if checkpoint.v != FORMAT_VERSION or checkpoint.snapshot != ref:
        return SnapshotLoad(None, "the checkpoint describes another snapshot")
    try:
        data = ops.read_regular(path, checkpoint.snapshot_size, follow_symlinks=True)
    except FileNotFoundError:
        return SnapshotLoad(None, "it is missing")
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            return SnapshotLoad(None, "it does not match its checkpoint (larger than recorded)")
        return SnapshotLoad(None, f"it cannot be read ({exc.strerror})")
    try:
        items = _entries_decoder.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        return SnapshotLoad(None, f"it is not a valid JSON array of entries ({exc})")
    if len(data) != checkpoint.snapshot_size or _crc32(data) != checkpoint.snapshot_crc32:
        return SnapshotLoad(
            None, "it does not match its checkpoint (changed, or a crash came between the two)"
        )
    return SnapshotLoad({item.key: item for item in items})


def decode_snapshot(data: bytes) -> list[VideoMetadata] | None:
    """The entries in a snapshot's bytes; ``None`` if they are not a JSON array of entries."""
    try:
        return _entries_decoder.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None


def describes(checkpoint: Checkpoint, data: bytes) -> bool:
    """Whether ``checkpoint`` was written for a snapshot of exactly these bytes (size and CRC-32)."""
    return len(data) == checkpoint.snapshot_size and _crc32(data) == checkpoint.snapshot_crc32


def read_untrusted(path: Path, ops: FileOps = _plain_ops) -> bytes | None:
    """The bytes of the snapshot at ``path``, which no checkpoint vouches for (so no recorded size bounds
    the read: :data:`MAX_SNAPSHOT_BYTES` does); ``None`` if it is missing. Raises ``OSError`` if it cannot
    be read (a FIFO, a device, larger than the bound)."""
    try:
        return ops.read_regular(path, MAX_SNAPSHOT_BYTES, follow_symlinks=True)
    except FileNotFoundError:
        return None


def untrusted_keys(data: bytes) -> set[tuple[str, str]]:
    """The keys of the entries in a snapshot's bytes that no checkpoint vouches for; empty if they are not
    a JSON array. An item the ledger could not take as an entry (an id it refuses, a status it does not
    know) still counts, under a key no entry can have: one such item must not make the app's file look
    empty, and so replaceable. Ids are taken in NFC, as import stores them."""
    try:
        return {(normalize_id(e.spot_id), normalize_id(e.era_id)) for e in _entries_decoder.decode(data)}
    except (msgspec.MsgspecError, UnicodeDecodeError):
        pass
    try:
        items = msgspec.json.decode(data)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return set()
    if not isinstance(items, list):
        return set()
    keys: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        spot = item.get("spotId") if isinstance(item, dict) else None
        era = item.get("eraId") if isinstance(item, dict) else None
        if isinstance(spot, str) and isinstance(era, str):
            keys.add((normalize_id(spot), normalize_id(era)))
        else:
            keys.add(("\x00", str(index)))  # no id has a control character
    return keys


def _keys_in(path: Path, ops: FileOps) -> set[tuple[str, str]] | None:
    """The keys of the entries in the snapshot file at ``path`` (:func:`untrusted_keys`); ``None`` if it
    is missing or unreadable."""
    try:
        data = read_untrusted(path, ops)
    except OSError:
        return None
    return None if data is None else untrusted_keys(data)


def keep_replaced(ops: FileOps, path: Path, data: bytes) -> Path:
    """Keep ``data``, the bytes of the snapshot at ``path`` about to be replaced, beside it as
    ``<name>.replaced-<first 16 hex digits of their SHA-256>`` (fsynced; kept once per content)."""
    aside = path.with_name(f"{path.name}{REPLACED_MARK}{hashlib.sha256(data).hexdigest()[:16]}")
    for name in os.listdir(path.parent):  # left by a crash while keeping a copy
        if name.startswith(path.name + REPLACED_MARK) and TEMP_MARK in name:
            ops.unlink(path.parent / name)
    if not aside.exists():
        atomic_write(ops, aside, data, label="replaced")
    return aside


def remove_temp_files(ops: FileOps, *targets: Path) -> None:
    """Remove temp files an interrupted write of ``targets`` left. Call with the projection lock held."""
    for target in targets:
        for temp in temp_files(target):
            try:
                ops.unlink(temp)
            except FileNotFoundError:
                pass


def write_snapshot(
    ops: FileOps,
    path: Path,
    checkpoint_path: Path,
    data: bytes | bytearray,
    head: Head,
    *,
    first: bool = False,
) -> Checkpoint:
    """Write the snapshot ``data`` (:func:`encode_snapshot` of the state at ``head``), then its
    checkpoint, both atomically. ``first``: there is no checkpoint yet, so this one is fsynced (a missing
    ``checkpoint.json`` then always means there never was one, which ``verify`` holds to stricter rules)."""
    atomic_write(ops, path, data, label="snapshot")
    checkpoint = Checkpoint(
        v=FORMAT_VERSION,
        seq=head.seq,
        offset=head.at,
        last_hash=head.hash,
        last_ts=head.ts,
        snapshot=snapshot_ref(path, checkpoint_path),
        snapshot_size=len(data),
        snapshot_crc32=_crc32(data),
    )
    # The checkpoint is a cache, checked against the snapshot and the log whenever it is read: losing it,
    # or finding it stale or unreadable after a power loss, costs one replay and nothing else.
    atomic_write(ops, checkpoint_path, _encoder.encode(checkpoint) + b"\n", label="checkpoint", durable=first)
    return checkpoint


def snapshot_is_current(path: Path, checkpoint: Checkpoint | None, seq: int, ref: str) -> bool:
    """Cheap check that the snapshot on disk already shows event ``seq``: its checkpoint is at or past it
    and the file has the recorded size."""
    if checkpoint is None or checkpoint.seq < seq or checkpoint.snapshot != ref:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == checkpoint.snapshot_size


_Pair = TypeVar("_Pair")


def read_pair(
    read: Callable[[], _Pair], agree: Callable[[_Pair], bool], lock: FileLock, *, holding: bool = False
) -> _Pair:
    """The snapshot and its checkpoint as one consistent pair: ``read()`` them (the checkpoint first),
    and again while they disagree (``agree``) and a projector may be between its renames (it replaces the
    snapshot, then the checkpoint). Once no projector holds the projection lock (taken shared, without
    waiting: the caller may hold store locks a projector waits for) the pair is read a last time; after
    about a second of trying (:data:`PAIR_TRIES`) the disagreement stands. ``holding``: the caller holds
    the lock itself, so what it reads stands."""
    pair = read()
    for attempt in range(PAIR_TRIES):
        if holding or agree(pair):
            break
        if lock.acquire(shared=True, wait=False):  # no projector is between its renames
            try:
                return read()  # what it left (a crash or a full disk between the two)
            finally:
                lock.release()
        time.sleep(min(0.001 * 2**attempt, 0.05))
        pair = read()
    return pair


def holds(store: EventStore, checkpoint: Checkpoint) -> Head | None:
    """The place ``checkpoint`` names as ``store`` holds it, if the store holds its record exactly as it
    says (``seq``, ``lastHash``, ``lastTs``: :meth:`ledger.backend.EventStore.at`, through its ``offset``,
    the file backend's bookmark); else ``None``."""
    head = checkpoint.head
    found = store.at(head)
    return found if found is not None and found[:3] == head[:3] else None


def unimported_error(snapshot: Path, directory: Path, count: int, outcome: str) -> UnimportedSnapshotError:
    """The error for a write that would replace the snapshot at ``snapshot`` while it holds ``count``
    entries the log does not; ``outcome`` says what was left undone."""
    return UnimportedSnapshotError(
        f"{snapshot} holds {count} entries that the log does not (the app's own file, not imported "
        f"yet?); {outcome}: run `video-ledger --dir {directory} import {snapshot}` to adopt them first"
    )


class SnapshotEncoder:
    """:func:`encode_snapshot`, the same bytes, re-encoding and rewriting only the entries that changed since
    the last call.

    Entries are immutable values that the fold replaces when they change, so an entry still holding the
    same object is still encoded the same; finding the changed ones is a C-level identity comparison. Keys
    are only ever added: a few new ones are put in their sorted places, many at once mean a fresh sort.
    The snapshot's bytes are kept whole, and a changed entry's bytes are spliced into them in place (its
    offset from per-block byte counts), so a set does not join 10,000 chunks into a new 3 MB buffer (what
    it saves: docs/performance.md, *A set re-encodes only what it changed*; ``explain.py set``).
    """

    def __init__(self) -> None:
        self._keys: list[tuple[str, str]] = []
        self._values: list[VideoMetadata] = []
        self._chunks: list[bytes] = []
        """Each entry's bytes; each but the first starts with its separator ``,\n``."""
        self._index: dict[tuple[str, str], int] | None = None
        """Where each key is in ``_keys`` (built when first needed, dropped when keys are added)."""
        self._data = bytearray()
        """The snapshot's bytes: ``[\n``, the chunks, ``\n]\n``."""
        self._blocks: list[int] = []
        """The byte count of each block of :data:`_BLOCK` chunks (an entry's offset in a few sums)."""

    def encode(
        self, entries: entries_view.Entries, changed: Iterable[tuple[str, str]] | None = None
    ) -> bytes | bytearray:
        """The snapshot of ``entries``. ``changed``, if given, names every key whose entry may have changed
        since the last call (then only those are looked at); ``None`` compares every entry.

        The bytes returned are the encoder's own buffer, which the next call changes in place: write them
        (or copy them) before calling again."""
        if not entries:
            return b"[]\n"
        encode = _encoder.encode
        chunks = self._chunks
        spliced = len(self._keys) == len(entries) and bool(self._data)
        if changed is not None and len(self._keys) == len(entries):  # no new keys: update in place
            if self._index is None:
                self._index = {key: i for i, key in enumerate(self._keys)}
            index, values = self._index, self._values
            todo: list[int] = []
            for key in changed:
                i = index[key]
                value = entries[key]
                if value is not values[i]:
                    values[i] = value
                    todo.append(i)
        else:
            if len(self._keys) != len(entries):  # keys are only ever added: a new one changes the count
                self._index = None
                if len(entries) - len(self._keys) > 64 or not self._keys:
                    self._keys = sorted(entries)
                    self._values = [entries[key] for key in self._keys]
                    self._chunks = chunks = [b",\n" + encode(value) for value in self._values]
                    chunks[0] = chunks[0][2:]
                else:  # a few new entries: put each in its place (memmove, not a new sort and encode)
                    self._insert(entries, entries.keys() - set(self._keys))
            values = list(map(entries.__getitem__, self._keys))
            todo = list(itertools.compress(range(len(values)), map(operator.is_not, values, self._values)))
            self._values = values
        if not spliced or len(todo) > _SPLICES:  # build the whole file once, with one copy
            for i in todo:
                chunks[i] = encode(values[i]) if i == 0 else b",\n" + encode(values[i])
            self._data = bytearray(b"".join([b"[\n", *chunks, b"\n]\n"]))
            self._blocks = [sum(map(len, chunks[i : i + _BLOCK])) for i in range(0, len(chunks), _BLOCK)]
            return self._data
        data, blocks = self._data, self._blocks
        for i in todo:
            chunk = encode(values[i]) if i == 0 else b",\n" + encode(values[i])
            block = i // _BLOCK
            at = 2 + sum(blocks[:block]) + sum(map(len, chunks[block * _BLOCK : i]))
            old = len(chunks[i])
            data[at : at + old] = chunk  # a memmove of what follows only if the length changed
            blocks[block] += len(chunk) - old
            chunks[i] = chunk
        return data

    def _insert(self, entries: entries_view.Entries, new: set[tuple[str, str]]) -> None:
        for key in sorted(new):
            i = bisect.bisect(self._keys, key)
            self._keys.insert(i, key)
            self._values.insert(i, entries[key])
            chunk = _encoder.encode(entries[key])
            if i == 0 and self._chunks:
                self._chunks[0] = b",\n" + self._chunks[0]  # the old first entry is second now
            self._chunks.insert(i, chunk if i == 0 else b",\n" + chunk)


_BLOCK = 128
"""Chunks per block of :attr:`SnapshotEncoder._blocks`: an offset costs a few hundred lengths added."""
_SPLICES = 32
"""More changed entries than this at once are written by building the whole file again (one copy) rather
than spliced in one by one (a memmove each)."""


class Projector:
    """Writes the snapshot file of one store's entries, and its checkpoint, and seeds the write model.

    The state is a :class:`~ledger.model.Model` (entries and head) that the store API shares: on first use
    (and after :meth:`~ledger.model.Model.invalidate`, or when the store says the head it holds is stale)
    :meth:`load` seeds it from the checkpointed snapshot if the store holds the checkpoint's record exactly
    (:meth:`ledger.backend.EventStore.at`), else from nothing; :meth:`refresh` reads what is new
    (:meth:`ledger.backend.EventStore.read`). :meth:`project` writes the snapshot (and its checkpoint)
    under the projection lock, only if the one on disk is behind, so a snapshot never goes backwards.
    """

    def __init__(
        self,
        store: EventStore,
        model: Model,
        snapshot: Path,
        checkpoint: Path,
        lock: FileLock,
        *,
        ops: FileOps,
        where: Path,
        follow_symlinks: bool = False,
    ) -> None:
        self.store = store
        self.model = model
        self.ops = ops
        self.where = where
        """How errors name the store (the file backend: the log's path)."""
        self.snapshot_path = snapshot
        self.checkpoint_path = checkpoint
        self.lock = lock
        self.follow_symlinks = follow_symlinks
        self.ref = snapshot_ref(snapshot, checkpoint)
        self.problem: str | None = None
        """Why the snapshot on disk cannot be trusted, if it cannot (it is then rewritten)."""
        self._cache = SnapshotEncoder()
        self._doubted: Checkpoint | None = None
        """A checkpoint that disagreed with the store, judged once the store has been replayed."""
        self._untrusted: set[tuple[str, str]] | None = None
        """The keys in the snapshot on disk when no checkpoint vouched for it."""
        self._projecting = False
        """This projector holds the projection lock (so the snapshot and checkpoint stand still)."""
        self.tree = TreeFile(checkpoint.parent, ops)
        """The Merkle tree beside the snapshot, kept up with the store as each snapshot is written."""

    @property
    def entries(self) -> entries_view.Entries:
        return self.model.entries

    @property
    def head(self) -> Head:
        """Where :attr:`entries` stand in the store."""
        return self.model.head

    def load(self) -> None:
        """Seed the model: from the checkpointed snapshot if it can be trusted, else from nothing (the
        next :meth:`refresh` replays the store from the start).

        The checkpoint is trusted only if the store holds its record exactly as it says (``seq``,
        ``lastHash``, ``lastTs``: :meth:`ledger.backend.EventStore.at`, through its ``offset``, the file
        backend's bookmark). When they disagree, the store is replayed from the start, so a damaged record
        is reported at its own line, and then the checkpoint is judged (:meth:`_judge`)."""
        self.model.invalidate()
        self._cache = SnapshotEncoder()
        self._doubted = self._untrusted = None
        entries: entries_view.Entries = {}
        head = GENESIS
        checkpoint, loaded = self._read_pair()
        if checkpoint is None or loaded is None:
            self.problem = "it has no checkpoint" if self.snapshot_path.exists() else "it is missing"
        elif (found := holds(self.store, checkpoint)) is None:
            self._doubted = checkpoint
            self.problem = "its checkpoint does not match the log"
        elif loaded.entries is not None:
            entries, head = loaded.entries, found
            self.problem = None
        else:
            self.problem = loaded.problem
        if self.problem is not None:
            self._untrusted = _keys_in(self.snapshot_path, self.ops)
        self.model.seed(entries, head)

    def _read_pair(self) -> tuple[Checkpoint | None, SnapshotLoad | None]:
        """The checkpoint and what :func:`load_snapshot` makes of the snapshot, read as one consistent pair
        (:func:`read_pair`)."""

        def read() -> tuple[Checkpoint | None, SnapshotLoad | None]:
            checkpoint = read_checkpoint(self.checkpoint_path, self.ops)
            if checkpoint is None:
                return None, None
            return checkpoint, load_snapshot(self.snapshot_path, checkpoint, self.ref, self.ops)

        return read_pair(read, lambda pair: pair[1] is None or pair[1].entries is not None, self.lock,
                         holding=self._projecting)  # fmt: skip

    def _judge(self, checkpoint: Checkpoint) -> None:
        """After a replay from the start: why ``checkpoint``, which disagreed with the store, cannot be used.

        The store's every record is looked at (:meth:`ledger.backend.EventStore.check`, durable or not: a
        rare path) for the one whose hash is the checkpoint's ``lastHash``. Found: the store holds the
        state the snapshot was made of, and only the checkpoint's own ``seq`` or ``lastTs`` was changed; it
        is distrusted (the replay stands, the snapshot is rewritten). Not found: the store lacks what the
        checkpoint saw (records cut off or damaged at the end, or rewritten before it):
        :class:`CorruptLogError`."""
        audit = self.store.check()
        found: tuple[int, str] | None = None
        for lines, events, _ in audit:
            if found is None:
                for line, event in zip(lines, events, strict=True):
                    if line_hash(line) == checkpoint.last_hash:
                        found = event.seq, event.ts
                        break
        end = audit.end
        if found is None and checkpoint.seq > end.seq:
            what = "a damaged line" if audit.torn is not None else "the end of the log"
            raise CorruptLogError(
                self.where,
                end.seq + 1,
                f"{what}, but the snapshot's checkpoint is at event {checkpoint.seq} (the log ends at event "
                f"{end.seq}): trailing events are missing from the log",
            )
        if found is None:
            raise CorruptLogError(
                self.where,
                checkpoint.seq,
                f"the log does not match the snapshot's checkpoint (event {checkpoint.seq}): the log before "
                "it was rewritten, or the checkpoint is another log's",
            )
        log.warning(
            "%s: the checkpoint says event %d at %s, but its line is event %d at %s; replayed the log",
            self.checkpoint_path,
            checkpoint.seq,
            checkpoint.last_ts,
            found[0],
            found[1],
        )

    def unimported(self, more: entries_view.Entries | None = None) -> int:
        """How many entries of the snapshot on disk, which no checkpoint vouches for, the store does not
        hold (0 when the checkpoint vouches for it), besides the entries ``more`` (a writer's unseen ones).
        Such a snapshot is not overwritten (:class:`UnimportedSnapshotError`) until it is imported."""
        if self.problem is None or not self._untrusted:
            return 0
        return len(self._untrusted.difference(self.model.entries, more or ()))

    def unimported_error(self, count: int, outcome: str) -> UnimportedSnapshotError:
        """:func:`unimported_error` for this projector's snapshot."""
        return unimported_error(self.snapshot_path, self.checkpoint_path.parent, count, outcome)

    def ready(self) -> None:
        """Before a writer plans against the model: loaded, and caught up with what is durable if it was
        just (re)loaded (otherwise the store's ``append`` shows the writer what it has not read)."""
        if not self.model.loaded:
            self.refresh()

    def refresh(self) -> None:
        """Read what was appended since the last look (durable records only: the store's ``read``); seed
        the model first if it is not loaded, or again if the store no longer holds its head (the file was
        replaced or cut short); then judge a checkpoint in doubt."""
        if not self.model.loaded:
            self.load()
        try:
            self.model.catch_up()
        except StaleHeadError:
            self.load()
            self.model.catch_up()
        if self._doubted is not None:
            doubted, self._doubted = self._doubted, None
            try:
                self._judge(doubted)
            except BaseException:
                self.model.invalidate()
                raise

    def project(self) -> bool:
        """Bring the snapshot up to the end of the store unless it already is. Returns whether it wrote."""
        with self.lock.held(), self._holding():
            self.refresh()
            self.remove_temp_files()
            checkpoint = read_checkpoint(self.checkpoint_path, self.ops)
            if self.problem is None and snapshot_is_current(
                self.snapshot_path, checkpoint, self.model.head.seq, self.ref
            ):
                return False
            self.write(first=checkpoint is None)
            return True

    def rebuild(
        self, checked: Callable[[Iterator[list[EventType]]], Iterable[EventType]] | None = None
    ) -> Head:
        """Replay the whole store from scratch and write the snapshot (under the projection lock). Returns
        the head replayed to.

        ``checked``, if given, takes the runs of events and yields the events, raising at the first it
        refuses (the store passes the lifecycle and time rules of ``verify``); then nothing is written."""
        with self.lock.held(), self._holding():
            ends: list[Head] = [GENESIS]

            def runs() -> Iterator[list[EventType]]:
                # durable records only; a tree of another log (or none) is built in the same pass
                for batch in self.tree.along(self.store, self.store.read(GENESIS)):
                    ends.append(batch.end)
                    yield batch.events

            events = itertools.chain.from_iterable(runs()) if checked is None else checked(runs())
            entries = entries_view.fold(events)  # reads the store: ``ends`` fills as it goes
            self.model.seed(entries, ends[-1])
            self._cache, self._doubted = SnapshotEncoder(), None
            self.write()
            return self.model.head

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        self._projecting = True
        try:
            yield
        finally:
            self._projecting = False

    def write(self, *, first: bool | None = None) -> None:
        """Write the snapshot of the current state and its checkpoint. Call with the projection lock held.
        ``first``: there is no readable checkpoint (``None``: look)."""
        self.refuse_symlinked_snapshot()
        model = self.model
        data = self._cache.encode(model.entries, model.take_changed())  # held now, written or not
        if self.problem is not None:
            try:
                old = read_untrusted(self.snapshot_path, self.ops)  # None: missing, nothing to report
            except OSError as exc:
                raise io_error("read", self.snapshot_path, exc) from None  # not replaced unseen
            if old is not None and old != data:
                self._replace_untrusted(old)
        self.remove_temp_files()
        self.tree.keep(self.store, model.head)  # first: once the snapshot shows a record, so may a proof
        try:
            if first is None:
                first = read_checkpoint(self.checkpoint_path, self.ops) is None
            write_snapshot(self.ops, self.snapshot_path, self.checkpoint_path, data, model.head, first=first)
        except OSError as exc:
            raise io_error("write the snapshot", self.snapshot_path, exc) from None
        self.problem = None

    def _replace_untrusted(self, old: bytes) -> None:
        """Before the snapshot's bytes ``old``, which no checkpoint vouched for, are replaced: refuse if it
        holds entries the state lacks; keep it beside (:func:`keep_replaced`) if no checkpoint names it."""
        missing = untrusted_keys(old).difference(self.entries)
        if missing:
            raise self.unimported_error(len(missing), "it was left as it is")
        checkpoint = read_checkpoint(self.checkpoint_path, self.ops)
        kept = ""
        if checkpoint is None or checkpoint.snapshot != self.ref:
            try:
                kept = f"; its old bytes are kept in {keep_replaced(self.ops, self.snapshot_path, old).name}"
            except OSError as exc:
                raise io_error("keep a copy of", self.snapshot_path, exc) from None
        log.warning("%s: %s; rebuilding it from the log%s", self.snapshot_path, self.problem, kept)

    def remove_temp_files(self) -> None:
        """Remove temp files a projector that died left. With the projection lock held: no other projector
        is writing one."""
        try:
            remove_temp_files(self.ops, self.snapshot_path, self.checkpoint_path)
        except OSError as exc:
            raise io_error("clean up temp files beside", self.snapshot_path, exc) from None

    def refuse_symlinked_snapshot(self) -> None:
        """Refuse to replace a snapshot that is a symbolic link (unless allowed), a FIFO, a device or a
        directory: something an operator put there on purpose, or by mistake, is not silently replaced."""
        try:
            mode = os.lstat(self.snapshot_path).st_mode
        except OSError:
            return  # missing (or unreachable: the write says why)
        if stat.S_ISLNK(mode):
            if self.follow_symlinks:
                return
            raise symlink_refused("write", self.snapshot_path)
        if not stat.S_ISREG(mode):
            raise LedgerIOError(
                f"cannot write {self.snapshot_path}: it is {file_kind(mode)}, not a regular file (refused)"
            )
