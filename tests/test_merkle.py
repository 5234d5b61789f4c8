"""The Merkle tree (ledger/merkle.py): RFC 9162 hashing, roots, compact ranges, inclusion and consistency
proofs, against transparency-dev/merkle's published vectors (tests/vectors/SOURCE.md) and as properties."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import ProofError

VECTORS = Path(__file__).parent / "vectors" / "merkle"
REFERENCE = json.loads((VECTORS / "roots.json").read_text())
LEAVES = [merkle.leaf_hash(bytes.fromhex(x)) for x in REFERENCE["leafInputs"]]


def _probes(kind: str) -> list[tuple[str, dict[str, object]]]:
    return [
        (p.relative_to(VECTORS).as_posix(), json.loads(p.read_text()))
        for p in sorted(VECTORS.glob(f"{kind}/**/*.json"))
    ]


def _b(values: object) -> list[bytes]:
    """Base64 values as bytes; Go's ``null`` (a nil slice or hash) as nothing."""
    assert values is None or isinstance(values, list)
    return [base64.b64decode(v or "") for v in values or []]


def test_the_hashes_are_rfc_9162s() -> None:
    for case in REFERENCE["leafHashes"]:
        assert merkle.leaf_hash(bytes.fromhex(case["leaf"])).hex() == case["hash"]
    node = REFERENCE["nodeHash"]
    assert merkle.node_hash(bytes.fromhex(node["left"]), bytes.fromhex(node["right"])).hex() == node["hash"]
    assert merkle.EMPTY_ROOT.hex() == REFERENCE["rootHashes"][0]


def test_roots_of_every_size_match_the_reference() -> None:
    for size, want in enumerate(REFERENCE["rootHashes"]):
        assert merkle.root(LEAVES[:size]).hex() == want
    source = merkle.memory_source(LEAVES)
    for level, hashes in enumerate(REFERENCE["nodeHashes"]):
        for index, want in enumerate(hashes):
            assert source(level, index).hex() == want


def test_the_compact_range_holds_the_reference_peaks() -> None:
    nodes = REFERENCE["nodeHashes"]
    compact = merkle.CompactRange()
    for size in range(1, 9):
        compact.append(LEAVES[size - 1])
        want = [nodes[level][index] for level, index in merkle.CompactRange.peak_ids(size)]
        assert [p.hex() for p in compact.peaks] == want


@pytest.mark.parametrize(
    ("name", "probe"), _probes("inclusion"), ids=lambda x: x if isinstance(x, str) else ""
)
def test_inclusion_vectors(name: str, probe: dict[str, object]) -> None:
    args = (
        probe["leafIdx"],
        probe["treeSize"],
        *_b([probe["leafHash"] or ""]),
        _b(probe["proof"]),
        *_b([probe["root"] or ""]),
    )
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)  # type: ignore[arg-type]
    else:
        merkle.verify_inclusion(*args)  # type: ignore[arg-type]
        # and the proof this module generates for it is the published one
        got = merkle.inclusion_proof(args[0], args[1], merkle.memory_source(LEAVES))  # type: ignore[arg-type]
        assert got == _b(probe["proof"])


@pytest.mark.parametrize(
    ("name", "probe"), _probes("consistency"), ids=lambda x: x if isinstance(x, str) else ""
)
def test_consistency_vectors(name: str, probe: dict[str, object]) -> None:
    root1, root2 = _b([probe["root1"] or "", probe["root2"] or ""])
    args = (probe["size1"], probe["size2"], root1, root2, _b(probe["proof"]))
    if probe["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)  # type: ignore[arg-type]
    else:
        merkle.verify_consistency(*args)  # type: ignore[arg-type]
        if not name.startswith("consistency/additional"):
            got = merkle.consistency_proof(args[0], args[1], merkle.memory_source(LEAVES))  # type: ignore[arg-type]
            assert got == _b(probe["proof"])


def test_the_vectors_are_all_there() -> None:
    assert len(_probes("inclusion")) == 98
    assert len(_probes("consistency")) == 98


def _flips(proof: list[bytes]) -> list[list[bytes]]:
    """Every proof with one byte of one hash changed."""
    out = []
    for i, h in enumerate(proof):
        for j in range(len(h)):
            changed = bytearray(h)
            changed[j] ^= 0x01
            out.append([*proof[:i], bytes(changed), *proof[i + 1 :]])
    return out


LEAF_SET = [merkle.leaf_hash(b"%d" % i) for i in range(300)]
SOURCE = merkle.memory_source(LEAF_SET)
ROOTS = [merkle.root(LEAF_SET[:n]) for n in range(len(LEAF_SET) + 1)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 299).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_inclusion_proof_verifies_and_every_altered_one_fails(case: tuple[int, int]) -> None:
    size, index = case
    proof = merkle.inclusion_proof(index, size, SOURCE)
    assert len(proof) <= size.bit_length()
    merkle.verify_inclusion(index, size, LEAF_SET[index], proof, ROOTS[size])
    for altered in _flips(proof):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, LEAF_SET[index], altered, ROOTS[size])
    wrong: list[tuple[int, int, bytes]] = [(index, size + 1, ROOTS[size + 1])]
    wrong += [(i, size, ROOTS[size]) for i in (index - 1, index + 1, index ^ 1) if i != index]
    wrong += [(index, s, ROOTS[s]) for s in (size - 1, size * 2) if index < s <= 300]
    for i, s, r in wrong:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(i, s, LEAF_SET[index], proof, r)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, LEAF_SET[index], [*proof, ROOTS[size]], ROOTS[size])
    if proof:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, LEAF_SET[index], proof[:-1], ROOTS[size])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 299).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_every_consistency_proof_verifies_and_every_altered_one_fails(case: tuple[int, int]) -> None:
    old, new = case
    proof = merkle.consistency_proof(old, new, SOURCE)
    merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)
    for altered in _flips(proof):
        with pytest.raises(ProofError):
            merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], altered)
    # the wrong sizes, each with its own root (the same roots with another size: see the trap below)
    for o, n, r1, r2 in [
        (old, new + 1, ROOTS[old], ROOTS[new + 1]),
        (old + 1, new, ROOTS[old + 1], ROOTS[new]),
        (old - 1, new, ROOTS[old - 1], ROOTS[new]),
        (old, new - 1, ROOTS[old], ROOTS[new - 1]),
    ]:
        if (o, n) == (old, new) or not 0 <= o <= n or (o == n and r1 == r2 and not proof):
            continue
        with pytest.raises(ProofError):
            merkle.verify_consistency(o, n, r1, r2, proof)
    if old != new:  # a fork: another tree of the same size
        with pytest.raises(ProofError):
            merkle.verify_consistency(
                old, new, ROOTS[old], merkle.root([*LEAF_SET[: new - 1], b"\x00" * 32]), proof
            )


def test_the_trap_a_bare_verifier_takes_size_n_plus_1_with_the_root_of_n() -> None:
    """Why a verifier takes size and root together from one signed checkpoint, never apart: RFC 9162's
    algorithm alone accepts a proof for size n against size n + 1 with the root of size n for many n
    (the proof bundle's check refuses it: tests/test_proofs.py,
    test_a_bundle_with_another_size_is_refused)."""
    passed = 0
    for size in range(1, 64):
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, SOURCE)
            try:
                merkle.verify_inclusion(index, size + 1, LEAF_SET[index], proof, ROOTS[size])
            except ProofError:
                continue
            passed += 1
    assert passed > 0


@pytest.mark.parametrize("size", range(0, 70))
def test_every_proof_of_small_trees_verifies(size: int) -> None:
    for index in range(size):
        merkle.verify_inclusion(
            index, size, LEAF_SET[index], merkle.inclusion_proof(index, size, SOURCE), ROOTS[size]
        )
    for old in range(1, size + 1):
        merkle.verify_consistency(
            old, size, ROOTS[old], ROOTS[size], merkle.consistency_proof(old, size, SOURCE)
        )


def test_bad_arguments_raise_proof_errors() -> None:
    with pytest.raises(ProofError):
        merkle.inclusion_proof(3, 3, SOURCE)
    with pytest.raises(ProofError):
        merkle.consistency_proof(4, 3, SOURCE)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(0, 1, b"short", [], ROOTS[1])
    with pytest.raises(ProofError):
        merkle.CompactRange(3, [ROOTS[1]])
