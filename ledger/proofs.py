"""Proofs a stranger can check: signed checkpoints, consistency and inclusion proofs, witness cosignatures.

The audit side of the Merkle tree that :mod:`ledger.tree` keeps beside the snapshot. Every proof given out
is first checked here against the tree's root (RFC 9162's verification, :mod:`ledger.merkle`); a proof
that does not check means the tree files are damaged, and they are rebuilt from the log once before the
proof is made again (a second failure is an error, never a wrong proof).

- :meth:`Proofs.sign`: a checkpoint (C2SP ``tlog-checkpoint``) of the tree as it stands, signed by the
  log's key, optionally binding the snapshot's SHA-256 in an extension line; refused if it does not
  extend the last checkpoint this key signed (kept in ``merkle.note``).
- :meth:`Proofs.extends`: the log extends an older signed checkpoint (a consistency proof against its
  signed root, no replay): a rollback or a fork is refused.
- :meth:`Proofs.consistency`: the consistency proof between two tree sizes.
- :meth:`Proofs.prove`: a bundle (the entry's lines, their leaf indexes and inclusion proofs, and the
  signed checkpoint they are proven against) that :func:`verify_bundle` checks offline.
- :meth:`Proofs.cosign`: a witness's cosignature, given only after the checkpoint is shown consistent
  with the last one that witness cosigned.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, NamedTuple, TypeVar

import msgspec

from ledger.errors import (
    EntryNotFoundError,
    LedgerIOError,
    NoteError,
    ProofError,
    io_error,
)
from ledger.events import EventType, VideoMetadata, check_line, decode_event, normalize_id
from ledger.fileops import FileOps, atomic_write
from ledger.layout import TREE_NOTE_NAME
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import Checkpoint, Note, Signer, Verifier, cosign, open_note, parse_note, sign
from ledger.projector import Projector, describes, read_checkpoint
from ledger.tree import TreeFile
from projections import entries as entries_view

__all__ = (
    "BUNDLE_FORMAT",
    "SNAPSHOT_EXTENSION",
    "Bundle",
    "BundleRecord",
    "Extension",
    "Proofs",
    "Proven",
    "encode_bundle",
    "load_signer",
    "load_verifier",
    "read_file",
    "save_signer",
    "verify_bundle",
    "write_file",
)

log = logging.getLogger("ledger")

BUNDLE_FORMAT: Final = "video-ledger-proof/v1"
SNAPSHOT_EXTENSION: Final = "snapshot-sha256 "
"""The extension line that binds the snapshot to a checkpoint: this prefix, then the SHA-256 (hex) of
``generated-videos.json`` as it was when the tree had the checkpoint's size."""
MAX_NOTE_BYTES: Final = 1 << 20
MAX_BUNDLE_BYTES: Final = 1 << 26
_T = TypeVar("_T")
_plain = FileOps()


class BundleRecord(msgspec.Struct, forbid_unknown_fields=True):
    """One record of a bundle: its leaf ``index`` (its ``seq`` minus one), its ``line`` exactly as stored
    (without the newline), and the inclusion ``proof`` (base64 hashes, bottom up)."""

    index: int
    line: str
    proof: list[str]


class Bundle(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """What ``prove`` writes (``docs/format.md``, *The proof bundle*)."""

    format: str
    spot_id: str
    era_id: str
    checkpoint: str
    """The signed checkpoint (a note, with its signature lines) the records are proven against."""
    records: list[BundleRecord]


_bundle_decoder = msgspec.json.Decoder(Bundle)
_encoder = msgspec.json.Encoder()


class Proven(NamedTuple):
    """A bundle checked: the entry as its records make it, the checkpoint (and note) they are proven
    against, and the records' events."""

    entry: VideoMetadata
    checkpoint: Checkpoint
    note: Note
    events: list[EventType]


class Extension(NamedTuple):
    """An older checkpoint's tree extended: its checkpoint, the tree's size and root now, and the
    consistency proof between them."""

    old: Checkpoint
    size: int
    root: bytes
    proof: list[bytes]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Proofs:
    """The proofs of one ledger, over its projector (its store, directory, projection lock and tree).
    Every call holds the projection lock while it reads the tree, so no projector extends it meanwhile."""

    def __init__(self, projector: Projector) -> None:
        self._projector = projector
        self.note_path = projector.checkpoint_path.parent / TREE_NOTE_NAME
        """The last checkpoint signed here (with the cosignatures added since)."""

    @property
    def _tree(self) -> TreeFile:
        return self._projector.tree

    @contextlib.contextmanager
    def _current(self) -> Iterator[TreeFile]:
        """The tree brought up to the end of the store, under the projection lock."""
        with self._projector.lock.held():
            self._tree.follow(self._projector.store)
            yield self._tree

    def _checked(self, tree: TreeFile, make: Callable[[], _T]) -> _T:
        """``make()``, which checks what it makes; if that fails (damaged tree files), once more after
        rebuilding the tree from the log."""
        try:
            return make()
        except (ProofError, LedgerIOError) as exc:
            log.warning("%s does not check (%s); rebuilding it from the log", tree.tree_path, exc)
        tree.rebuild(self._projector.store)
        return make()

    def root_at(self, tree: TreeFile, size: int) -> bytes:
        """The root of the tree's first ``size`` leaves (its compact range read from the node slots)."""
        if size == tree.size:
            return tree.root()
        if not 0 <= size <= tree.size:
            raise ProofError(f"the log has {tree.size} records, not {size}")
        peaks = [tree.node(level, index) for level, index in CompactRange.peak_ids(size)]
        return CompactRange(size, peaks).root()

    # -- what the log's own key signs ---------------------------------------------------------------

    def head(self) -> tuple[int, bytes]:
        """The tree's size and root now."""
        with self._current() as tree:
            return tree.size, tree.root()

    def last_signed(self) -> bytes | None:
        """The last checkpoint signed here (``merkle.note``), if any."""
        try:
            return self._projector.ops.read_regular(self.note_path, MAX_NOTE_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise io_error("read", self.note_path, exc) from None

    def sign(self, signer: Signer, origin: str | None = None, *, bind_snapshot: bool = True) -> bytes:
        """A signed checkpoint of the tree now: origin (the key's name by default), size, root and, if the
        snapshot is at that size and ``bind_snapshot``, its SHA-256 (:data:`SNAPSHOT_EXTENSION`). Refused
        (:class:`~ledger.errors.ProofError`, nothing written) if the tree does not extend the last
        checkpoint ``signer`` signed here. Kept in ``merkle.note`` and returned."""
        with self._current() as tree:
            extensions = []
            digest = self._snapshot_digest(tree.size) if bind_snapshot else None
            if digest is not None:
                extensions.append(SNAPSHOT_EXTENSION + digest)
            previous = self.last_signed()
            if previous is not None:
                with contextlib.suppress(NoteError):  # signed by another key: not this key's promise
                    old = Checkpoint.parse(open_note(previous, [signer.verifier]).text)
                    self._extension(tree, old)
            checkpoint = Checkpoint(origin or signer.name, tree.size, tree.root(), tuple(extensions))
            signed = sign(checkpoint.text(), signer)
            self._keep(signed)
            return signed

    def _snapshot_digest(self, size: int) -> str | None:
        projector = self._projector
        checkpoint = read_checkpoint(projector.checkpoint_path, projector.ops)
        if checkpoint is None or checkpoint.seq != size or checkpoint.snapshot != projector.ref:
            return None
        try:
            data = projector.ops.read_regular(projector.snapshot_path, checkpoint.snapshot_size)
        except OSError:
            return None
        return hashlib.sha256(data).hexdigest() if describes(checkpoint, data) else None

    def _keep(self, signed: bytes) -> None:
        try:
            atomic_write(self._projector.ops, self.note_path, signed, label="signed checkpoint")
        except OSError as exc:
            raise io_error("write", self.note_path, exc) from None

    # -- consistency ------------------------------------------------------------------------------

    def _extension(self, tree: TreeFile, old: Checkpoint) -> Extension:
        """The tree now extends ``old`` (a checkpoint whose signature was checked): the proof, checked
        against ``old``'s root; a rollback or a fork raises :class:`~ledger.errors.ProofError`."""
        if old.size > tree.size:
            raise ProofError(
                f"the log holds {tree.size} records, fewer than the {old.size} of the signed checkpoint: "
                "it was rolled back or cut short"
            )

        def make() -> Extension:
            size, root = tree.size, tree.root()
            if old.size == 0:
                if old.root != EMPTY_ROOT:
                    raise ProofError("the signed checkpoint of the empty tree has another root")
                return Extension(old, size, root, [])
            proof = consistency_proof(old.size, size, tree.node)
            verify_consistency(old.size, size, old.root, root, proof)
            return Extension(old, size, root, proof)

        try:
            return self._checked(tree, make)
        except ProofError:
            raise ProofError(
                f"the log does not extend the signed tree of {old.size} records: its records up to "
                f"{old.size} were rewritten (a fork), or the checkpoint is another log's"
            ) from None

    def extends(self, signed: bytes, verifiers: Sequence[Verifier], *, full: bool = False) -> Extension:
        """Check that the log extends the tree of ``signed`` (a checkpoint signed by each of
        ``verifiers``) without a replay: the tree's head is checked against the store, and a consistency
        proof against the checkpoint's signed root. ``full``: rebuild the tree from the log first (a
        replay: what checks the tree file itself). Raises :class:`~ledger.errors.NoteError` for a note
        that does not check and :class:`~ledger.errors.ProofError` for a rollback or a fork."""
        old = Checkpoint.parse(open_note(signed, verifiers, need=len(verifiers)).text)
        with self._current() as tree:
            if full:
                tree.rebuild(self._projector.store)
            return self._extension(tree, old)

    def consistency(self, old: int, new: int) -> tuple[bytes, bytes, list[bytes]]:
        """The roots of the tree at sizes ``old`` and ``new`` and the consistency proof between them,
        checked against those roots."""
        if not 0 <= old <= new:
            raise ProofError(f"no consistency proof from {old} records to {new}: sizes are 0 <= OLD <= NEW")
        with self._current() as tree:
            if new > tree.size:
                raise ProofError(f"the log holds {tree.size} records, not {new}")

            def make() -> tuple[bytes, bytes, list[bytes]]:
                old_root, new_root = self.root_at(tree, old), self.root_at(tree, new)
                if new == tree.size and new_root != tree.root():
                    raise ProofError("the tree's root differs from its compact range")
                proof = consistency_proof(old, new, tree.node)
                if old:
                    verify_consistency(old, new, old_root, new_root, proof)
                return old_root, new_root, proof

            return self._checked(tree, make)

    # -- inclusion --------------------------------------------------------------------------------

    def prove(self, spot_id: str, era_id: str, *, signer: Signer | None = None) -> Bundle:
        """A bundle proving the records of entry ``(spot_id, era_id)`` against a signed checkpoint: a new
        one signed by ``signer`` (:meth:`sign`), else the last one signed here (records after it are left
        out). Raises :class:`~ledger.errors.EntryNotFoundError` when the signed tree holds no record of
        the entry, :class:`~ledger.errors.NoteError` when there is no signed checkpoint."""
        key = (normalize_id(spot_id), normalize_id(era_id))
        signed = self.sign(signer) if signer is not None else self.last_signed()
        if signed is None:
            raise NoteError(
                f"no checkpoint was signed in {self.note_path.parent}: sign one (checkpoint --key)"
            )
        checkpoint = Checkpoint.parse(parse_note(signed).text)
        with self._current() as tree:
            if checkpoint.size > tree.size:
                raise ProofError(
                    f"{self.note_path} signs {checkpoint.size} records; the log holds {tree.size}"
                )

            def make() -> list[BundleRecord]:
                if self.root_at(tree, checkpoint.size) != checkpoint.root:
                    raise ProofError(f"{self.note_path} is not a checkpoint of this log's tree")
                return self._records(tree, key, checkpoint)

            records = self._checked(tree, make)
        if not records:
            raise EntryNotFoundError(
                f"no record of {key[0]}/{key[1]} in the signed tree ({checkpoint.size} records)"
            )
        return Bundle(BUNDLE_FORMAT, key[0], key[1], signed.decode(), records)

    def _records(self, tree: TreeFile, key: tuple[str, str], checkpoint: Checkpoint) -> list[BundleRecord]:
        leaves = [leaf for leaf in tree.leaves_of(*key) if leaf < checkpoint.size]
        records = []
        found = set()
        for leaf, record in tree.records(self._projector.store, leaves):
            found.add(leaf)
            if record.event.key != key:
                continue  # another entry whose key digest is the same
            leaf_value = leaf_hash(record.line)
            if leaf_value != tree.node(0, leaf):
                raise ProofError(f"record {record.seq} is not the tree's leaf {leaf}")
            proof = inclusion_proof(leaf, checkpoint.size, tree.node)
            verify_inclusion(leaf, checkpoint.size, leaf_value, proof, checkpoint.root)
            records.append(BundleRecord(leaf, record.line.decode(), [_b64(h) for h in proof]))
        if found != set(leaves):
            raise ProofError(f"the tree's index does not lead to records {sorted(set(leaves) - found)}")
        return records

    # -- witnesses --------------------------------------------------------------------------------

    def cosign(self, witness: Signer, log_key: Verifier, state: Path, signed: bytes | None = None) -> bytes:
        """``signed`` (by default the last checkpoint signed here), checked with the log's key
        ``log_key``, cosigned by ``witness`` once it is shown consistent with the last checkpoint this
        witness cosigned (kept in ``state``; the first one is cosigned as it is). Refused
        (:class:`~ledger.errors.ProofError`) for a rollback or a fork. Writes ``state`` (and
        ``merkle.note``, when that is what was cosigned)."""
        stored = signed is None
        signed = self.last_signed() if signed is None else signed
        if signed is None:
            raise NoteError(
                f"no checkpoint was signed in {self.note_path.parent}: sign one (checkpoint --key)"
            )
        new = Checkpoint.parse(open_note(signed, [log_key]).text)
        try:
            last: bytes | None = self._projector.ops.read_regular(state, MAX_NOTE_BYTES)
        except FileNotFoundError:
            last = None
        except OSError as exc:
            raise io_error("read", state, exc) from None
        if last is not None:
            old = Checkpoint.parse(open_note(last, [witness.verifier]).text)
            if old.origin != new.origin:
                raise NoteError(f"{state} holds a checkpoint of {old.origin}, not {new.origin}")
            self._witnessed(old, new)
        cosigned = cosign(signed, witness)
        try:
            atomic_write(self._projector.ops, state, cosigned, label="witness state")
        except OSError as exc:
            raise io_error("write", state, exc) from None
        if stored:
            self._keep(cosigned)
        return cosigned

    def _witnessed(self, old: Checkpoint, new: Checkpoint) -> None:
        """``new`` extends ``old``, both signed: shown by a consistency proof from the log, checked against
        the two signed roots only (a witness trusts the host for nothing but the proof's hashes)."""
        if new.size < old.size:
            raise ProofError(
                f"refused: {new.size} records, fewer than the {old.size} cosigned before (a rollback)"
            )
        if old.size == 0:
            if old.root != EMPTY_ROOT:
                raise ProofError("refused: the empty tree cosigned before had another root")
            return
        if new.size == old.size:
            if new.root != old.root:
                raise ProofError(f"refused: two roots for {old.size} records (a fork)")
            return
        with self._current() as tree:
            if new.size > tree.size:
                raise ProofError(f"the log holds {tree.size} records, fewer than the checkpoint's {new.size}")
            proof = consistency_proof(old.size, new.size, tree.node)
        try:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        except ProofError:
            raise ProofError(
                f"refused: the checkpoint of {new.size} records does not extend the one of {old.size} "
                "cosigned before (a fork)"
            ) from None


def read_file(path: str | os.PathLike[str], max_size: int = MAX_BUNDLE_BYTES) -> bytes:
    """A note or bundle file read whole (at most ``max_size`` bytes; a FIFO or device refused)."""
    try:
        return _plain.read_regular(Path(path), max_size, follow_symlinks=True)
    except OSError as exc:
        raise io_error("read", Path(path), exc) from None


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file ``path`` with ``data`` atomically (a note or a bundle)."""
    try:
        atomic_write(_plain, Path(path), data, label="proof file")
    except OSError as exc:
        raise io_error("write", Path(path), exc) from None


def load_signer(path: str | os.PathLike[str]) -> Signer:
    """The private key in the file ``path`` (``PRIVATE+KEY+...``, as :func:`save_signer` writes it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NoteError(
            f"cannot read the key {os.fspath(path)}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    return Signer.parse(text.strip())


def save_signer(path: str | os.PathLike[str], signer: Signer) -> None:
    """Write ``signer`` to a new file ``path``, readable by its owner only; an existing file is never
    replaced (a key lost that way cannot be had back)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise NoteError(
            f"{os.fspath(path)} exists: a key is never overwritten (choose another file)"
        ) from None
    except OSError as exc:
        raise io_error("create", Path(path), exc) from None
    try:
        os.write(fd, f"{signer}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load_verifier(text: str) -> Verifier:
    """A verifier key given as itself (``NAME+HEXID+BASE64``) or as the path of a file that holds it."""
    if "+" not in text or os.path.isfile(text):
        try:
            text = Path(text).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise NoteError(f"{text!r} is neither a verifier key nor a readable file of one: {exc}") from None
    return Verifier.parse(text)


def encode_bundle(bundle: Bundle) -> bytes:
    """The bundle as JSON, one line."""
    return _encoder.encode(bundle) + b"\n"


def verify_bundle(data: bytes, verifiers: Sequence[Verifier]) -> Proven:
    """Check a bundle offline with nothing but the verifier keys: the checkpoint is signed by every one of
    ``verifiers``, and each record's line hashes to the leaf its inclusion proof leads from to the
    checkpoint's root (size and root taken together from that one checkpoint), is whole (crc), and
    decodes to an event of the entry the bundle names with ``seq`` = index + 1. Returns the entry as its
    records make it. Raises :class:`~ledger.errors.ProofError` or :class:`~ledger.errors.NoteError`."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise ProofError(f"a bundle is at most {MAX_BUNDLE_BYTES} bytes")
    try:
        bundle = _bundle_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise ProofError(f"not a proof bundle: {exc}") from None
    if bundle.format != BUNDLE_FORMAT:
        raise ProofError(f"not a {BUNDLE_FORMAT} bundle: {bundle.format!r}")
    note = open_note(bundle.checkpoint.encode(), verifiers, need=len(verifiers))
    checkpoint = Checkpoint.parse(note.text)
    if not bundle.records:
        raise ProofError("the bundle proves no record")
    entry: VideoMetadata | None = None
    events: list[EventType] = []
    last = -1
    for record in bundle.records:
        if record.index <= last:
            raise ProofError("the bundle's records are not in increasing leaf order")
        last = record.index
        line = record.line.encode()
        proof = [_hash(h, record.index) for h in record.proof]
        verify_inclusion(record.index, checkpoint.size, leaf_hash(line), proof, checkpoint.root)
        event = _event(line, record.index)
        if event.key != (bundle.spot_id, bundle.era_id):
            raise ProofError(
                f"record {record.index} is of {event.spot_id}/{event.era_id}, not the bundle's entry"
            )
        entry = entries_view.apply(entry, event)
        events.append(event)
    assert entry is not None
    return Proven(entry, checkpoint, note, events)


def _hash(text: str, index: int) -> bytes:
    """A proof hash from its base64, in its one canonical spelling (no stray bits a flip could hide in)."""
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProofError(f"record {index}: a proof hash is not base64") from None
    if _b64(value) != text:
        raise ProofError(f"record {index}: a proof hash is not canonical base64")
    return value


def _event(line: bytes, index: int) -> EventType:
    if b"\n" in line or not check_line(line):
        raise ProofError(f"record {index}: the line is not whole (framing or crc)")
    try:
        event = decode_event(line)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        raise ProofError(f"record {index}: not an event: {exc}") from None
    if event.seq != index + 1:
        raise ProofError(f"record {index}: its seq is {event.seq}, not {index + 1}")
    return event
