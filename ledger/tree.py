"""The Merkle tree of a store's log, kept as three derived files beside the snapshot.

Like the snapshot, the tree is derived: rebuilt from the log whenever it is missing, damaged or of
another log, and never trusted on its own. It is kept current as the projector writes the snapshot,
in steps of :data:`KEEP_LAG` records (:meth:`TreeFile.keep`; :meth:`TreeFile.follow` reads only the
records after the tree's head through the store's ``read``), so a proof reads O(log n) hashes, O(log² n)
pages of the entry index and, besides the batches that hold the entry's records, fewer than
:data:`KEEP_LAG` + :data:`UNIT` records of the log, never the whole log.

- ``merkle.tree``: a header (:data:`HEADER_SIZE` bytes: magic, tree size, the store's head at the last
  leaf, the compact range's hashes, CRC-32), then every node hash of the tree in post-order, 32 bytes
  each: leaf ``i`` and the complete subtrees it completes are appended after leaf ``i - 1``'s, so node
  ``(level, index)`` is at slot ``2j - popcount(j) + level`` with ``j = (index + 1) * 2**level - 1``.
- ``merkle.keys``: the entry index, which finds an entry's leaves in O(log² n) page reads. The first
  ``UNIT * (n // UNIT)`` leaves are cut, like the compact range, into the tree's maximal complete subtrees
  of at least :data:`UNIT` leaves; each such subtree's (key digest, leaf) pairs are kept sorted, in pages
  of :data:`PAGE_SIZE` bytes whose CRC-32 covers the subtree's own hash (a peak of the compact range) and
  the page's number, so a page of another subtree, another log or an older state never passes for one of
  this tree. The last ``n % UNIT`` leaves (the tail) are not in the file: their keys are read from the log
  itself. Each level has its own region; a step that completes one unit writes its new subtree where no
  subtree the header names lies, then the header (a crash leaves the old state whole); a step of several
  units may write over a subtree the old header names, which a crash then shows as pages that do not
  check.
- ``merkle.index``: per leaf, 16 bytes: the store head (seq and bookmark, little-endian) to read its
  record after.

None is fsynced: a crash at any point leaves files that either check (header CRC, file sizes, the
compact range read back from the node slots equal to the header's, the store holding the header's head,
each index page's CRC against its subtree's hash) or are rebuilt. Damage the checks cannot see (an
interior node changed in place) is caught where it matters: every proof is checked against the compact
range's root before it is given out (:mod:`ledger.proofs`), and a proof that fails sends the tree to
:meth:`TreeFile.rebuild`.

Writers hold the projection lock (the snapshot's), so one process at a time extends the files.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

from ledger.backend import GENESIS, Batch, EventStore, Head, Record
from ledger.errors import CorruptLogError, LedgerError, LedgerIOError, StaleHeadError, io_error
from ledger.events import GENESIS_HASH, EventType
from ledger.fileops import FileOps, OwnedFd
from ledger.layout import TREE_INDEX_NAME, TREE_KEYS_NAME, TREE_NAME
from ledger.merkle import CompactRange, leaf_hash

__all__ = (
    "INDEX_NAME",
    "KEEP_LAG",
    "KEYS_NAME",
    "PAGE_SIZE",
    "TREE_NAME",
    "UNIT",
    "TreeFile",
    "key_digest",
    "node_slot",
)

log = logging.getLogger("ledger")

INDEX_NAME: Final = TREE_INDEX_NAME
KEYS_NAME: Final = TREE_KEYS_NAME
HEADER_SIZE: Final = 4096
_MAGIC: Final = b"VLTREE02"
_FIXED = struct.Struct("<8sQQ32s40s")  # magic, size, bookmark at the last leaf, its line hash, its time
_INDEX = struct.Struct("<QQ")  # seq and bookmark of the head to read the leaf's record after
KEEP_LAG: Final = 128
"""How far the projector lets the tree fall behind the log before it brings it up (:meth:`TreeFile.keep`)."""
UNIT: Final = 256
"""The smallest subtree the entry index sorts (a power of two): the last ``size % UNIT`` leaves are read
from the log instead."""
_UNIT_LEVEL: Final = UNIT.bit_length() - 1
PAGE_SIZE: Final = 512
_PAIR: Final = 16  # a key digest (8 bytes) and a leaf (u64, big-endian: bytes sort as (digest, leaf))
_PER_PAGE: Final = 31
_BODY: Final = _PAIR * _PER_PAGE
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


class _Damaged(LedgerIOError):
    """A page of the entry index does not check: the files are rebuilt."""


@functools.lru_cache(maxsize=1 << 16)  # a replay meets each entry's key many times
def key_digest(spot_id: str, era_id: str) -> bytes:
    """The 8 bytes that stand for an entry's key ``(spotId, eraId)`` (NFC, as stored) in the index."""
    return hashlib.sha256(f"{spot_id}\x00{era_id}".encode()).digest()[:8]


def node_slot(level: int, index: int) -> int:
    """The post-order slot of the complete subtree ``(level, index)``."""
    last = ((index + 1) << level) - 1
    return 2 * last - last.bit_count() + level


def _nodes(size: int) -> int:
    """How many node hashes the tree of ``size`` leaves stores."""
    return 2 * size - size.bit_count()


def _pages(level: int) -> int:
    """How many pages the entry index's subtree of ``UNIT * 2**level`` leaves takes."""
    return -(-(UNIT << level) // _PER_PAGE)


def _region(level: int) -> int:
    """Where the entry index keeps its subtree of ``UNIT * 2**level`` leaves (each level its own place)."""
    return PAGE_SIZE * sum(_pages(j) for j in range(level))


def _runs(units: int) -> list[tuple[int, int]]:
    """The sorted subtrees of the first ``units * UNIT`` leaves, largest first, as (level, first unit): the
    compact range's peaks of at least :data:`UNIT` leaves, in its order."""
    runs, start = [], 0
    for level in range(units.bit_length() - 1, -1, -1):
        if units >> level & 1:
            runs.append((level, start))
            start += 1 << level
    return runs


def _extent(units: int) -> int:
    """The size the entry index of ``units`` units has at least."""
    return _region(units.bit_length() - 1) + PAGE_SIZE * _pages(units.bit_length() - 1) if units else 0


def _page_crc(peak: bytes, number: int, body: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(body, zlib.crc32(peak + number.to_bytes(8, "little"))))


def _encode_run(level: int, peak: bytes, pairs: list[bytes]) -> bytes:
    """The pages of one sorted subtree, each with the CRC of its subtree's hash, number and body."""
    data = b"".join(pairs)
    pages = []
    for number in range(_pages(level)):
        body = data[number * _BODY : (number + 1) * _BODY].ljust(_BODY, b"\0")
        pages.append(body + _page_crc(peak, number, body).ljust(PAGE_SIZE - _BODY, b"\0"))
    return b"".join(pages)


class _Header(NamedTuple):
    head: Head
    compact: CompactRange


def _encode_header(head: Head, compact: CompactRange) -> bytes:
    line_hash = bytes.fromhex(head.hash) if head.seq else bytes(32)
    body = _FIXED.pack(_MAGIC, compact.size, head.at, line_hash, head.ts.encode()) + b"".join(compact.peaks)
    return body + struct.pack("<I", zlib.crc32(body))


def _decode_header(data: bytes) -> _Header | None:
    if len(data) < _FIXED.size + 4:
        return None
    magic, size, at, line_hash, ts = _FIXED.unpack_from(data)
    end = _FIXED.size + 32 * size.bit_count()
    if magic != _MAGIC or len(data) < end + 4:
        return None
    if struct.unpack_from("<I", data, end)[0] != zlib.crc32(data[:end]):
        return None
    peaks = [data[i : i + 32] for i in range(_FIXED.size, end, 32)]
    hash_hex = line_hash.hex() if size else GENESIS_HASH
    head = Head(size, hash_hex, ts.rstrip(b"\0").decode(), at) if size else GENESIS
    return _Header(head, CompactRange(size, peaks))


class TreeFile:
    """The tree files of one ledger directory. Open with the projection lock held; :meth:`follow` brings
    them up to the store, :meth:`node` and :meth:`leaves_of` read them."""

    def __init__(self, directory: Path, ops: FileOps | None = None) -> None:
        self.tree_path = directory / TREE_NAME
        self.index_path = directory / INDEX_NAME
        self.keys_path = directory / KEYS_NAME
        self.ops = ops or FileOps()
        self.head: Head = GENESIS
        """The store's head at the last leaf (``head.seq`` is the tree's size)."""
        self.compact = CompactRange()
        self._known: bytes | None = None  # the header as this handle last read or wrote it
        self._retry_at = 0  # after a failed keep, the head from which the next one tries
        self._tail: list[bytes] | None = None
        self._learning = False  # reading the tail's records to learn their keys (:meth:`_take`)
        """The key digests of the leaves after the entry index's last unit, once this handle knows them
        (appended them, or read them from the store: :meth:`follow`)."""
        self._fds = {path: OwnedFd(self) for path in (self.tree_path, self.keys_path, self.index_path)}

    @property
    def size(self) -> int:
        return self.compact.size

    def root(self) -> bytes:
        return self.compact.root()

    # -- reading ------------------------------------------------------------------------------------

    def _open(self, path: Path, create: bool) -> int | None:
        """This handle's descriptor of ``path``, opened once and kept (``None``: the file is missing and
        not to be created)."""
        owned = self._fds[path]
        fd = owned.get()
        if fd is None:
            flags = os.O_RDWR | _NOFOLLOW | (os.O_CREAT if create else 0)
            try:
                fd = owned.fd = self.ops.open_regular(path, flags, 0o644)
            except FileNotFoundError:
                if create:
                    raise
                return None
        return fd

    def close(self) -> None:
        """Let go of the descriptors this handle keeps (also done when it is garbage-collected)."""
        for owned in self._fds.values():
            fd = owned.get()
            owned.fd = None
            if fd is not None:
                with contextlib.suppress(OSError):
                    self.ops.close(fd)

    def _same_files(self) -> bool:
        """Whether the descriptors kept are still of the files at the paths (none removed or replaced)."""
        for path, owned in self._fds.items():
            fd = owned.get()
            if fd is None:
                continue
            try:
                if os.stat(path).st_ino != self.ops.fstat(fd).st_ino:
                    return False
            except OSError:
                return False
        return True

    def _read(self, path: Path, size: int, offset: int) -> bytes:
        fd = self._open(path, False)
        return b"" if fd is None else self.ops.pread(fd, size, offset)

    def load(self) -> bool | None:
        """Read the header and check it against the node slots and the file sizes. Returns ``None`` when
        the header is the one this handle last read or wrote (the state stands), ``True`` when the files
        hold a whole tree (read into the state), ``False`` when not (the state is the empty tree)."""
        try:
            data = self._read(self.tree_path, HEADER_SIZE, 0)
        except OSError as exc:
            raise io_error("read", self.tree_path, exc) from None
        if self._known is not None and data[: len(self._known)] == self._known:
            return None
        if not self._same_files():  # removed or replaced behind this handle: open them again
            self.close()
            data = self._read(self.tree_path, HEADER_SIZE, 0)
        header = _decode_header(data)
        self.head, self.compact, self._known, self._tail = GENESIS, CompactRange(), None, None
        self._learning = False
        if header is None:
            return not data
        size = header.compact.size
        try:
            tree_size = os.stat(self.tree_path).st_size
            index_size = os.stat(self.index_path).st_size if size else 0
            keys_size = os.stat(self.keys_path).st_size if size else 0
        except OSError:
            return False
        if tree_size < HEADER_SIZE + 32 * _nodes(size) or index_size < _INDEX.size * size:
            return False
        if keys_size < _extent(size // UNIT):
            return False
        peaks = [self.node(level, index) for level, index in CompactRange.peak_ids(size)]
        if peaks != header.compact.peaks:
            return False
        self.head, self.compact = header.head, header.compact
        self._known = _encode_header(self.head, self.compact)
        return True

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree ``(level, index)`` as the file holds it (a
        :data:`ledger.merkle.NodeSource`)."""
        try:
            data = self._read(self.tree_path, 32, HEADER_SIZE + 32 * node_slot(level, index))
        except OSError as exc:
            raise io_error("read", self.tree_path, exc) from None
        if len(data) != 32:
            raise LedgerIOError(f"{self.tree_path} ends before node ({level}, {index})")
        return data

    def _index(self, first: int, count: int) -> bytes:
        try:
            return self._read(self.index_path, _INDEX.size * count, _INDEX.size * first)
        except OSError as exc:
            raise io_error("read", self.index_path, exc) from None

    @property
    def indexed(self) -> int:
        """How many leaves the entry index holds (the tree's first ``UNIT * (size // UNIT)``)."""
        return self.size - self.size % UNIT

    def leaves_of(self, spot_id: str, era_id: str) -> list[int]:
        """The leaves whose records the entry index and the tail say are of entry ``(spot_id, era_id)``, in
        order (a digest match: the caller checks each record's key). Reads O(log n) pages of
        ``merkle.keys`` for each of its O(log n) subtrees, each page checked against its subtree's hash
        (a page that does not check raises :class:`~ledger.errors.LedgerIOError`); the tail's keys are the
        ones :meth:`follow` read from the log."""
        if self._tail is None or self._learning:
            raise LedgerIOError(f"{self.keys_path}: the tree was not brought up to its store (follow)")
        digest = key_digest(spot_id, era_id)
        found: list[int] = []
        for (level, start), peak in zip(_runs(self.size // UNIT), self.compact.peaks, strict=False):
            found += self._find(level, start, peak, digest)
        found += [self.indexed + i for i, tail in enumerate(self._tail) if tail == digest]
        return found

    def _page(self, level: int, peak: bytes, number: int) -> bytes:
        """Page ``number`` of the subtree at ``level`` whose hash is ``peak``, checked."""
        try:
            page = self._read(self.keys_path, PAGE_SIZE, _region(level) + PAGE_SIZE * number)
        except OSError as exc:
            raise io_error("read", self.keys_path, exc) from None
        if len(page) != PAGE_SIZE or page[_BODY : _BODY + 4] != _page_crc(peak, number, page[:_BODY]):
            raise _Damaged(f"{self.keys_path}: page {number} of level {level} does not check")
        return page

    def _find(self, level: int, start: int, peak: bytes, digest: bytes) -> list[int]:
        """The leaves of ``digest`` in one sorted subtree: a binary search over its pages for the first
        whose last pair is not below the digest, then the pairs from there while the digest holds."""
        count, pages = UNIT << level, _pages(level)
        read: dict[int, bytes] = {}
        low, high = 0, pages - 1
        while low < high:
            middle = (low + high) // 2
            last = min(_PER_PAGE, count - middle * _PER_PAGE) - 1
            page = read[middle] = self._page(level, peak, middle)
            if page[_PAIR * last : _PAIR * last + 8] < digest:
                low = middle + 1
            else:
                high = middle
        found: list[int] = []
        first = start * UNIT
        for number in range(low, pages):
            page = read.get(number) or self._page(level, peak, number)
            held = min(_PER_PAGE, count - number * _PER_PAGE)
            pairs = [page[i : i + _PAIR] for i in range(0, _PAIR * held, _PAIR)]
            for pair in pairs[bisect.bisect_left(pairs, digest) :]:
                if pair[:8] != digest:
                    return found
                leaf = int.from_bytes(pair[8:], "big")
                if not first <= leaf < first + count:
                    raise _Damaged(f"{self.keys_path}: leaf {leaf} is not in its subtree's range")
                found.append(leaf)
        return found

    def _run(self, level: int, peak: bytes) -> list[bytes]:
        """The sorted pairs of the subtree at ``level`` whose hash is ``peak``, every page checked."""
        count, data = UNIT << level, []
        for number in range(_pages(level)):
            data.append(self._page(level, peak, number)[:_BODY])
        joined = b"".join(data)
        return [joined[i : i + _PAIR] for i in range(0, _PAIR * count, _PAIR)]

    def records(self, store: EventStore, leaves: Iterable[int]) -> Iterator[tuple[int, Record]]:
        """The store's records of ``leaves`` (leaf ``i`` is record ``i + 1``), read from the heads the
        index names: each record is read after the one its batch started after."""
        wanted = sorted(set(leaves))
        starts: dict[tuple[int, int], set[int]] = {}
        for leaf in wanted:
            seq, at = _INDEX.unpack(self._index(leaf, 1))
            starts.setdefault((seq, at), set()).add(leaf + 1)
        for (seq, at), seqs in sorted(starts.items()):
            after = store.at(Head(seq, "", "", at)) if seq else GENESIS
            if after is None:
                raise StaleHeadError(f"the store holds no record {seq}, where the tree's index reads from")
            yield from _read(store, after, seqs)  # each group read whole before the caller sees it

    # -- writing ------------------------------------------------------------------------------------

    def follow(self, store: EventStore) -> int:
        """Bring the files up to the end of ``store``: the records after :attr:`head`, as the store's
        ``read`` yields them, appended as leaves. If the files hold no whole tree, or the store does not
        hold their head (another log, rewritten, cut short: checked through ``at`` whenever the header is
        not the one this handle wrote), they are rebuilt from the start; so are they when a page of the
        entry index does not check. A handle that does not know the keys of the tail (the leaves after
        the entry index's last unit) reads from the tail's first record instead, in the same pass.
        Returns how many leaves were added."""
        loaded = self.load()
        if loaded is False or (loaded and self.head.seq and _differs(store.at(self.head), self.head)):
            self._reset()
        start = self.head.seq
        try:
            return self._take(store)
        except _Damaged as exc:
            log.warning("%s does not check (%s); rebuilding it from the log", self.keys_path, exc)
        except (StaleHeadError, CorruptLogError) as exc:
            if not start:
                raise  # read from the first record: the store's own damage, the reader's error
            log.warning("%s does not check (%s); rebuilding it from the log", self.tree_path, exc)
        self._reset()  # the tree's head is no place in this log (replaced, rewritten): start again, once
        return self._take(store)

    def _tail_head(self, store: EventStore) -> Head:
        """Where to read from to learn the keys of the leaves after the entry index's last unit (fewer
        than :data:`UNIT`), which this handle does not know: the head its first record is read after."""
        self._tail, self._learning = [], True
        if self.indexed == self.size:
            return self.head
        seq, at = _INDEX.unpack(self._index(self.indexed, 1))
        after = store.at(Head(seq, "", "", at)) if seq else GENESIS
        if after is None:
            raise StaleHeadError(f"the store holds no record {seq}, where the tree's index reads from")
        return after

    def _learn(self, events: list[EventType]) -> None:
        """Take in the keys of the tail's records among ``events`` (records the tree holds)."""
        assert self._tail is not None
        self._tail += [key_digest(e.spot_id, e.era_id) for e in events if e.seq > self.indexed]

    def _learned(self) -> None:
        """The tail's keys are all known: else the store does not hold the tree's records."""
        self._learning = False
        if self._tail is None or len(self._tail) != self.size - self.indexed:
            self._tail = None
            raise StaleHeadError(
                f"the store does not hold the tree's records {self.indexed + 1} to {self.size}"
            )

    def _take(self, store: EventStore) -> int:
        """Append what the store yields after :attr:`head`. A write that fails stops the writing, not the
        reading: the store's reader is read to its end before the error is raised, so it never stays
        suspended with its files open (its cleanup would run at the collector's moment, unreported)."""
        added = 0
        failed: BaseException | None = None
        after = self.head if self._tail is not None else self._tail_head(store)
        try:
            for batch in store.read(after):
                if failed is None:
                    try:
                        added += self._append(batch)
                    except BaseException as exc:
                        failed = exc
        finally:
            if failed is not None:
                raise failed
        if self._learning:
            self._learned()
        return added

    def keep(self, store: EventStore, head: Head) -> None:
        """What the projector calls as it writes each snapshot, at the store's ``head``: :meth:`follow`
        once the tree is :data:`KEEP_LAG` records behind (or on this handle's first call), so an append
        pays for the tree's upkeep in batches, and a proof reads fewer than that many records of the log
        (it follows the tree to the end first). A tree that cannot be written now (a full disk...) is left
        behind, with a warning, and tried again :data:`KEEP_LAG` records later (a proof brings it up at
        once); the snapshot's write stands."""
        if head.seq < self._retry_at or (self._known is not None and head.seq - self.head.seq < KEEP_LAG):
            return
        try:
            self.follow(store)
        except (LedgerError, OSError) as exc:  # OSError: a store's read through a failing disk
            self._known = None
            self._retry_at = head.seq + KEEP_LAG  # not again at every append: a damaged log stays so
            log.warning("%s is behind the log: %s", self.tree_path, exc)

    def along(self, store: EventStore, batches: Iterable[Batch]) -> Iterator[Batch]:
        """``batches`` (a read of ``store`` from its first record) as they are; on the way, when the files
        hold no whole tree of ``store``, each is taken in as leaves, so that a replay from the start builds
        the tree in its own pass instead of :meth:`follow` reading the log again. A tree that cannot be
        written now is left behind (:meth:`keep` tries again and says why); the batches pass all the same."""
        try:
            loaded = self.load()
            if loaded is False or (loaded and self.head.seq and _differs(store.at(self.head), self.head)):
                self._reset()
            building = not self.head.seq
            if building and self._tail is None:  # nothing on disk yet: start the files empty
                self._reset()
        except (LedgerError, OSError):
            building = False
        try:
            for batch in batches:
                if building:
                    try:
                        self._append(batch)
                    except (LedgerError, OSError):
                        building = False
                yield batch
        finally:  # the read closes its file here, not whenever the collector reaches it
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def rebuild(self, store: EventStore) -> int:
        """Start again from the empty tree and follow the whole store."""
        self._reset()
        return self.follow(store)

    def _reset(self) -> None:
        self.head, self.compact, self._tail, self._learning = GENESIS, CompactRange(), [], False
        self._write(b"", b"", [], truncate=True)

    def _append(self, batch: Batch) -> int:
        """Take in ``batch`` where it continues the tree (records at or before :attr:`head` skipped)."""
        first = batch.events[0].seq if batch.events else 0
        skip = self.head.seq + 1 - first
        if self._learning:  # records the tree holds, read to learn the tail's keys
            self._learn(batch.events[: max(skip, 0)])
        if not batch.events or skip >= len(batch.events):
            return 0
        if skip < 0:  # a gap: these records do not continue the tree
            return 0
        if self._learning:
            self._learned()
        lines, events = batch.lines[skip:], batch.events[skip:]
        if self._tail is None:
            raise LedgerIOError(f"{self.keys_path}: the tail's keys are not known")
        before = CompactRange(self.compact.size, self.compact.peaks)
        nodes: list[bytes] = []
        for line in lines:
            nodes += self.compact.append(leaf_hash(line))
        self._tail += [key_digest(e.spot_id, e.era_id) for e in events]
        index = _INDEX.pack(self.head.seq, self.head.at) * len(events)  # each read after this head
        self.head = batch.end
        self._write(b"".join(nodes), index, self._sort(before))
        return len(lines)

    def _sort(self, before: CompactRange) -> list[tuple[int, bytes]]:
        """The entry index's pages for the units the tree completed since ``before`` (offset, data): each
        new sorted subtree is the pairs of the subtrees it takes in (read back, checked) and of the new
        leaves, sorted, written to its level's region. Only a subtree that ``before`` does not hold is
        written, and every subtree ``before`` holds is read before any write."""
        old_units, units = before.size // UNIT, self.size // UNIT
        if units == old_units:
            return []
        assert self._tail is not None
        first, cut = old_units * UNIT, (units - old_units) * UNIT
        fresh = [digest + leaf.to_bytes(8, "big") for leaf, digest in enumerate(self._tail[:cut], first)]
        old = dict(zip(_runs(old_units), before.peaks, strict=False))
        new = dict(zip(_runs(units), self.compact.peaks, strict=False))
        taken = {run: self._run(run[0], peak) for run, peak in old.items() if run not in new}
        writes = []
        for (level, start), peak in new.items():
            if (level, start) in old:
                continue
            end = start + (1 << level)
            pairs = [pair for (_, s), run in taken.items() if start <= s < end for pair in run]
            low, high = (start - old_units) * UNIT, (end - old_units) * UNIT
            pairs += fresh[max(low, 0) : max(high, 0)]
            pairs.sort()
            writes.append((_region(level), _encode_run(level, peak, pairs)))
        self._tail = self._tail[cut:]
        return writes

    def _write(
        self, nodes: bytes, index: bytes, pages: list[tuple[int, bytes]], *, truncate: bool = False
    ) -> None:
        """Write the new nodes, index records and entry index pages where no state the header names lies,
        then the header."""
        size = self.compact.size
        added = len(index) // _INDEX.size
        header = _encode_header(self.head, self.compact)
        try:
            tree, keys_fd, index_fd = (
                self._open(path, True) for path in (self.tree_path, self.keys_path, self.index_path)
            )
            assert tree is not None and keys_fd is not None and index_fd is not None
            if truncate:
                for fd, length in ((tree, HEADER_SIZE), (keys_fd, 0), (index_fd, 0)):
                    self.ops.ftruncate(fd, length)
            if nodes:
                self.ops.pwrite(tree, nodes, HEADER_SIZE + 32 * _nodes(size) - len(nodes))
                self.ops.pwrite(index_fd, index, _INDEX.size * (size - added))
            for offset, data in pages:
                self.ops.pwrite(keys_fd, data, offset)
            self.ops.pwrite(tree, header, 0)
        except OSError as exc:
            self._known = None
            self.close()
            raise io_error("write", self.tree_path, exc) from None
        self._known = header


@contextlib.contextmanager
def _reading(store: EventStore, after: Head) -> Iterator[Iterator[Batch]]:
    """``store.read(after)``, closed on leaving (a generator left to the collector would run its cleanup
    at some later moment, where nothing can report what it raises)."""
    batches = store.read(after)
    try:
        yield batches
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _read(store: EventStore, after: Head, seqs: set[int]) -> list[tuple[int, Record]]:
    """The records ``seqs`` of ``store``, read after ``after`` up to the last of them, as (leaf, record),
    gathered before any is handed on (the store's reader is closed here, not left suspended)."""
    last = max(seqs)
    found: list[tuple[int, Record]] = []
    with _reading(store, after) as batches:
        for batch in batches:
            for line, event in zip(batch.lines, batch.events, strict=True):
                if event.seq in seqs:
                    found.append((event.seq - 1, Record(event.seq, line, event)))
                if event.seq >= last:
                    return found
    return found


def _differs(found: Head | None, head: Head) -> bool:
    return found is None or found[:3] != head[:3]
