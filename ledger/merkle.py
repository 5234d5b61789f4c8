"""The Merkle tree over the log, as RFC 9162 §2.1 defines it: hashes, roots, compact ranges and proofs.

Pure functions over hashes; nothing here reads a file. The leaves are the log's records in ``seq`` order,
leaf ``i`` (0-based) being record ``i + 1``, each hashed over its line exactly as stored, without its
newline:

- leaf hash: ``SHA-256(0x00 || line)``;
- interior node: ``SHA-256(0x01 || left || right)``;
- the root of ``n`` leaves (``MTH``): the leaf hash for one leaf, ``SHA-256()`` (of nothing) for none,
  else ``node(MTH(first k), MTH(rest))`` with ``k`` the largest power of two below ``n``.

Anyone can recompute a root from ``events.jsonl`` with these three lines of their own. A *complete
subtree* ``(level, index)`` covers leaves ``index * 2**level`` up to ``(index + 1) * 2**level``; proofs are
generated from a :data:`NodeSource` that gives the hash of any complete subtree (the tree file,
:mod:`ledger.tree`, or a list of leaf hashes in memory), and verified with RFC 9162's own algorithms
(§2.1.3.2 inclusion, §2.1.4.2 consistency), which a verifier in another language copies line by line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from ledger.errors import ProofError

__all__ = (
    "EMPTY_ROOT",
    "CompactRange",
    "NodeSource",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "memory_source",
    "node_hash",
    "root",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
)

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: SHA-256 of nothing."""

NodeSource = Callable[[int, int], bytes]
"""``source(level, index)``: the hash of the complete subtree ``(level, index)`` (``level`` 0: a leaf)."""


def leaf_hash(line: bytes) -> bytes:
    """``SHA-256(0x00 || line)``: the leaf of a record's line as stored, without its newline."""
    return hashlib.sha256(b"\x00" + line).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The root (``MTH``) of the leaf hashes ``leaves``, computed whole (for tests and small trees)."""
    return CompactRange.of(leaves).root()


class CompactRange:
    """The tree of the first :attr:`size` leaves as O(log n) hashes: the roots of its maximal complete
    subtrees, left to right (one per bit set in ``size``, largest first). Appending a leaf and taking the
    root each cost O(log n) hashes, with no other node of the tree."""

    __slots__ = ("peaks", "size")

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        if size < 0 or len(peaks) != size.bit_count() or any(len(p) != HASH_SIZE for p in peaks):
            raise ProofError(f"a compact range of {size} leaves has {size.bit_count()} hashes of 32 bytes")
        self.size = size
        self.peaks = list(peaks)

    @classmethod
    def of(cls, leaves: Iterable[bytes]) -> CompactRange:
        """The compact range of the leaf hashes ``leaves``."""
        compact = cls()
        for leaf in leaves:
            compact.append(leaf)
        return compact

    @staticmethod
    def peak_ids(size: int) -> list[tuple[int, int]]:
        """The complete subtrees ``(level, index)`` whose roots form the compact range of ``size`` leaves."""
        ids: list[tuple[int, int]] = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                ids.append((level, start >> level))
                start += 1 << level
        return ids

    def append(self, leaf: bytes) -> list[bytes]:
        """Add a leaf; returns the hashes of the complete subtrees it completed, lowest first (the leaf
        itself first): what a post-order store of the tree appends after it."""
        done = [leaf]
        node = leaf
        size = self.size
        while size & 1:
            node = node_hash(self.peaks.pop(), node)
            done.append(node)
            size >>= 1
        self.peaks.append(node)
        self.size += 1
        return done

    def root(self) -> bytes:
        """The root of the tree of :attr:`size` leaves."""
        if not self.peaks:
            return EMPTY_ROOT
        node = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            node = node_hash(peak, node)
        return node

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.peaks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompactRange) and (self.size, self.peaks) == (other.size, other.peaks)

    __hash__ = None  # type: ignore[assignment]


def memory_source(leaves: Sequence[bytes]) -> NodeSource:
    """A :data:`NodeSource` over leaf hashes held in memory (every node computed, once)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def source(level: int, index: int) -> bytes:
        return levels[level][index]

    return source


def subtree_hash(source: NodeSource, lo: int, hi: int) -> bytes:
    """The hash (``MTH``) of leaves ``lo`` up to ``hi`` (``lo < hi``), where ``lo`` is a multiple of the
    largest power of two not above ``hi - lo`` (every subtree a proof names is): complete subtrees read
    from ``source``, the incomplete right edge hashed from them (O(log n) reads)."""
    n = hi - lo
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return source(level, lo >> level)
    k = _split(n)
    return node_hash(subtree_hash(source, lo, lo + k), subtree_hash(source, lo + k, hi))


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """The inclusion proof (RFC 9162 §2.1.3.1 ``PATH``) of leaf ``index`` in the tree of ``size``
    leaves, from the bottom up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(source, lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(source, lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(old: int, new: int, source: NodeSource) -> list[bytes]:
    """The consistency proof (RFC 9162 §2.1.4.1 ``PROOF``) that the tree of ``old`` leaves is a prefix of
    the tree of ``new`` leaves, from the bottom up. Empty for ``old`` 0 or ``old == new``."""
    if not 0 <= old <= new:
        raise ProofError(f"no consistency proof from a tree of {old} leaves to one of {new}")
    if old in (0, new):
        return []
    path: list[bytes] = []
    lo, hi, whole = 0, new, True
    while old != hi:
        k = _split(hi - lo)
        if old - lo <= k:
            path.append(subtree_hash(source, lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(source, lo, lo + k))
            lo, whole = lo + k, False
    if not whole:
        path.append(subtree_hash(source, lo, hi))
    path.reverse()
    return path


def _check_hashes(proof: Sequence[bytes], *roots: bytes) -> None:
    for h in (*proof, *roots):
        if len(h) != HASH_SIZE:
            raise ProofError(f"a hash is {len(h)} bytes, not {HASH_SIZE}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves whose root is ``root_hash``
    (RFC 9162 §2.1.3.2). Raises :class:`~ledger.errors.ProofError` if not."""
    _check_hashes(proof, leaf, root_hash)
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != root_hash:
        raise ProofError(f"the inclusion proof of leaf {index} does not lead to the root of {size} leaves")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``old`` leaves with root ``old_root`` is a prefix of the tree of ``new``
    leaves with root ``new_root`` (RFC 9162 §2.1.4.2). Raises :class:`~ledger.errors.ProofError` if not.
    Equal sizes need equal roots and an empty proof (roots compared whatever their length, as
    transparency-dev/merkle's vectors do); no proof starts at the empty tree (every tree extends it: the
    caller checks ``old_root`` is :data:`EMPTY_ROOT` instead)."""
    if not 0 <= old <= new:
        raise ProofError(f"a tree of {new} leaves cannot extend one of {old}: it is smaller")
    if old == 0:
        raise ProofError("no consistency proof starts at the empty tree")
    if old == new:
        if proof:
            raise ProofError("trees of one size need an empty consistency proof")
        if old_root != new_root:
            raise ProofError(f"two different roots for one tree of {old} leaves")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    _check_hashes(proof, old_root, new_root)
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError(f"the consistency proof does not lead to the root of {old} leaves")
    if sr != new_root:
        raise ProofError(f"the consistency proof does not lead to the root of {new} leaves")
